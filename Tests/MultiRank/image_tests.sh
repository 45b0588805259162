# Image-folder tests, sourced by run.sh: decoding against Pillow, the three
# layouts, bad files, sharded decoding, deep conv and conditional VAEs.
IMAGES="$VAE_MPI_ROOT/Tests/MultiRank/images.py"
images() { python3 "$IMAGES" "$@"; }

# Every format and mode decodes to the pixels Pillow reads (exactly), to
# RGB or gray; a folder with 16-bit PNGs becomes floats.
image_formats() {
    local d="$WORK/img-formats" d16="$WORK/img-formats16"
    images formats "$d"
    images formats "$d16" 16
    for channels in 3 1; do
        "$BINARY" export-data --data "$d" --channels "$channels" --out "$d-x$channels" >"$d-x$channels.out" 2>&1
        cat "$d-x$channels.out"
        images check-formats "$d" "$d-x$channels" "$channels"
    done
    # Hidden files are ignored; other files are skipped, and said once.
    expect "$d-x3.out" "skipped 1 file that is not .png, .jpg or .jpeg \(e.g. notes.txt\)"
    [ "$(count_lines "$d-x3.out" "skipped 1 file")" = 1 ]
    "$BINARY" export-data --data "$d16" --out "$d16-x" >"$d16-x.out" 2>&1
    cat "$d16-x.out"
    images check-formats "$d16" "$d16-x" 3
    # Colour by default (the folder has colour images); 16-bit: float32.
    python3 -c "
import numpy as np
a = np.load('$d16-x/train-images.npy'); assert a.dtype == np.float32 and a.shape[1:] == (3, 6, 8), (a.dtype, a.shape)
b = np.load('$d-x1/train-images.npy'); assert b.dtype == np.uint8 and b.shape[1] == 1, (b.dtype, b.shape)"
}

# Center crop, then box (shrinking) or bilinear (enlarging) resize, against
# Pillow; images of different sizes need --image-size.
image_resize() {
    local d="$WORK/img-resize" out="$WORK/img-resize.out"
    images resize "$d"
    "$BINARY" export-data --data "$d" --center-crop 24 --image-size 20,20 --out "$d-a" >/dev/null
    images check-resize "$d" "$d-a" 24 20 20
    "$BINARY" export-data --data "$d" --image-size 16,12 --out "$d-b" >/dev/null
    images check-resize "$d" "$d-b" 0 16 12
    "$BINARY" export-data --data "$d" --image-size 70,80 --out "$d-c" >/dev/null
    images check-resize "$d" "$d-c" 0 70 80
    # Different sizes without --image-size: both files named, with their sizes.
    if mpi 2 train --data "$d" --run-dir "$WORK/img-resize-run" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "img1.png: is 33 × 47 pixels \(width × height\) but .*img0.png is 40 × 30; images of different sizes need --image-size H,W"
    [ "$(count_lines "$out" "images of different sizes")" = 1 ]
    [ ! -e "$WORK/img-resize-run" ] || { echo "a run directory was left behind"; return 1; }
    # A crop larger than an image.
    if mpi 2 train --data "$d" --center-crop 30 --image-size 8,8 --run-dir "$WORK/img-resize-run" >"$out" 2>&1; then return 1; fi
    expect "$out" "img3.png: --center-crop 30 is larger than the image \(25 × 25 pixels"
    # Image options on IDX data.
    if mpi 2 train --data "$SMALL" --image-size 8,8 --run-dir "$WORK/img-resize-run" >"$out" 2>&1; then return 1; fi
    expect "$out" "--image-size applies to folders of PNG and JPEG images; .*small-data is not one"
    [ ! -e "$WORK/img-resize-run" ]
}

# The three layouts, with and without labels; each rank decodes only its
# shard (the counts it reports); class names reach config.json, the
# checkpoint and encode's output.
image_layouts() {
    local base="$WORK/img-layout" out
    images classes "$base-classes" 60 3 8 1 classes
    out="$base-classes.out"
    mpi 2 train --data "$base-classes" --epochs 2 --batch-size 16 --hidden-dim 32 --latent-dim 2 \
        --run-dir "$base-classes-run" >"$out" 2>&1
    cat "$out"
    expect "$out" "found 60 images in .*img-layout-classes \(class folders, 3 classes\)"
    expect "$out" "decoded 54 training images \(each rank only its shard: 27, 27 on ranks 0…1\) and 6 test images"
    expect "$out" "54 train \(.*\), 6 test \(held out\) images of 1×8×8, 3 classes \(class_0, class_1, class_2\)"
    helpers check-run "$base-classes-run" 2 6 2 8 8
    python3 -c "
import json; c = json.load(open('$base-classes-run/config.json'))
assert c['data']['class_names'] == ['class_0', 'class_1', 'class_2'], c['data']
s = json.load(open('$base-classes-run/checkpoints/' + open('$base-classes-run/checkpoints/latest').read().strip() + '.json'))
assert s['configuration']['data']['class_names'] == ['class_0', 'class_1', 'class_2']"
    [ -e "$base-classes-run/latent-scatter/epoch-0002.png" ]
    "$BINARY" encode --checkpoint "$base-classes-run" --out "$base-classes-run/latents.npy" >"$out.encode" 2>&1
    cat "$out.encode"
    expect "$out.encode" "labels.txt: class names, line k names label k \(0 class_0, 1 class_1, 2 class_2\)"
    [ "$(cat "$base-classes-run/labels.txt")" = "$(printf 'class_0\nclass_1\nclass_2')" ]
    # The encode subcommand on a folder passed as --images (all its images, labelled).
    "$BINARY" encode --checkpoint "$base-classes-run" --images "$base-classes" --out "$base-classes-run/all.npy" >"$out.all" 2>&1
    expect "$out.all" "posterior means, 60×2 float32"
    # train/ and test/, with class folders; at np 4 too.
    images classes "$base-splits" 80 4 8 3 splits
    mpi 4 train --data "$base-splits" --epochs 1 --batch-size 16 --hidden-dim 32 --run-dir "$base-splits-run" >"$base-splits.out" 2>&1
    cat "$base-splits.out"
    expect "$base-splits.out" "found 80 images in .* \(train/ and test/ folders, 4 classes\)"
    expect "$base-splits.out" "each rank only its shard: 18, 18, 18, 18 on ranks 0…3\) and 8 test images"
    expect "$base-splits.out" "72 train \(.*img-layout-splits/train\), 8 test \(.*img-layout-splits/test\) images of 3×8×8"
    helpers check-run "$base-splits-run" 1 8 4 8 8 3
    # A test fraction where there is a test folder.
    if mpi 2 train --data "$base-splits" --test-fraction 0.2 --run-dir "$WORK/img-no" >"$out" 2>&1; then return 1; fi
    expect "$out" "--test-fraction: there is a test file \(.*img-layout-splits/test\)"
    # Flat folders, no labels: held out (a seeded --test-fraction), or train/ and test/.
    images classes "$base-flat" 40 2 8 1 flat
    mpi 2 train --data "$base-flat" --epochs 1 --batch-size 8 --hidden-dim 16 --test-fraction 0.25 \
        --run-dir "$base-flat-run" >"$base-flat.out" 2>&1
    cat "$base-flat.out"
    expect "$base-flat.out" "found 40 images in .* \(a flat folder of images, no labels\)"
    expect "$base-flat.out" "30 train \(.*\), 10 test \(held out\) images of 1×8×8$"
    helpers check-run "$base-flat-run" 1 10 2 8 8
    images classes "$base-splitsflat" 40 2 8 1 splits-flat
    mpi 2 train --data "$base-splitsflat" --epochs 1 --batch-size 8 --hidden-dim 16 --run-dir "$base-splitsflat-run" \
        >"$base-splitsflat.out" 2>&1
    expect "$base-splitsflat.out" "found 40 images in .* \(train/ and test/ folders, no labels\)"
    # --conditional needs labels.
    if mpi 2 train --data "$base-flat" --conditional --run-dir "$WORK/img-no" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "--conditional: a conditional VAE needs labelled samples, and .*img-layout-flat has no labels"
    [ ! -e "$WORK/img-no" ]
}

# Unreadable, truncated and corrupt files: one clear error each, printed
# once, no run directory; --skip-bad-images counts and lists them.
image_bad_files() {
    local d="$WORK/img-bad" out="$WORK/img-bad.out" kind path
    for kind in truncated-png truncated-jpeg crc-png empty-jpeg text-png header-only-png; do
        rm -rf "$d"
        images classes "$d" 24 2 8 1 flat
        path=$(images bad "$d" "$kind")
        if mpi 2 train --data "$d" --run-dir "$WORK/img-bad-run" >"$out" 2>&1; then return 1; fi
        cat "$out"
        expect "$out" "vae-mpi: error( \(rank [0-9]\))?: $path: corrupt or truncated image: "
        [ "$(count_lines "$out" "corrupt or truncated")" = 1 ]
        [ ! -e "$WORK/img-bad-run" ] || { echo "a run directory was left behind"; return 1; }
    done
    rm -rf "$d"
    images classes "$d" 40 2 8 1 flat
    for kind in truncated-png truncated-jpeg crc-png empty-jpeg text-png header-only-png; do images bad "$d" "$kind" >/dev/null; done
    mpi 2 train --data "$d" --skip-bad-images --epochs 1 --batch-size 8 --hidden-dim 16 --run-dir "$WORK/img-bad-run" \
        >"$out" 2>&1
    cat "$out"
    expect "$out" "skipped 6 unreadable images \(--skip-bad-images\):"
    expect "$out" "bad-truncated-jpeg.jpg: JPEG: "
    python3 -c "
import json
records = [json.loads(l) for l in open('$WORK/img-bad-run/metrics.jsonl')]
skipped = [r for r in records if r['type'] == 'skipped_images']
assert len(skipped) == 1 and skipped[0]['count'] == 6 and len(skipped[0]['images']) == 6, skipped
evals = [r for r in records if r['type'] == 'eval']
train = sum(1 for r in records if r['type'] == 'train')
print('skipped', skipped[0]['images'])"
}

# A 3-stage conv VAE on 32×32 RGB images under mpirun: interrupted and
# resumed, byte-identical to the uninterrupted run; and a 64×64 RGB folder
# (4 stages) on the bf16 path.
image_conv() {
    local d="$WORK/img-conv" a="$WORK/img-conv-a" b="$WORK/img-conv-b"
    images classes "$d" 120 3 32 3 classes
    local common=(--data "$d" --model conv --conv-channels 8,16,32 --latent-dim 4 --epochs 2 --batch-size 24 --lr 2e-3)
    mpi 2 train "${common[@]}" --run-dir "$a" --verify-replicas >"$a.out" 2>&1
    cat "$a.out"
    expect "$a.out" "conv 3×32×32 → 8, 16, 32 → 4"
    helpers check-run "$a" 2 12 2 32 32 3
    python3 -c "
import json; s = json.load(open('$a/checkpoints/' + open('$a/checkpoints/latest').read().strip() + '.json'))
names = [t['name'] for t in s['tensors']] if 'tensors' in s else list(s['checksums'])
for n in ['enc.conv3.weight', 'dec.deconv3.weight', 'dec.deconv1.weight']: assert n in names, (n, names)"
    mpi 2 train "${common[@]}" --run-dir "$b" --max-steps 7 >/dev/null 2>&1
    mpi 2 train --resume "$b" >"$b.out" 2>&1
    cat "$b.out"
    cmp "$a/checkpoints/step-00000010.safetensors" "$b/checkpoints/step-00000010.safetensors"
    echo "resumed at step 7: byte-identical at step 10"
    # 64×64 RGB, four stages, bf16 (when the CPU has it).
    local big="$WORK/img-conv64" precision=fp32
    grep -q avx512_bf16 /proc/cpuinfo && precision=bf16
    images classes "$big" 48 2 64 3 classes
    mpi 2 train --data "$big" --model conv --conv-channels 8,16,32,64 --latent-dim 8 --epochs 1 --batch-size 16 \
        --precision "$precision" --run-dir "$big-run" >"$big.out" 2>&1
    cat "$big.out"
    expect "$big.out" "conv 3×64×64 → 8, 16, 32, 64 → 8"
    expect "$big.out" "kernels +onednn, $precision"
    helpers check-run "$big-run" 1 5 2 64 64 3
    # H and W must divide by 2^stages.
    if mpi 2 train --data "$d" --model conv --conv-channels 4,4,4,4,4,4 --run-dir "$WORK/img-conv-no" >"$d.err" 2>&1; then return 1; fi
    expect "$d.err" "divisible by 2.6 = 64 for 6 stride-2 stages; .* has 3×32×32 images"
}

# The conditional VAE end to end: samples of class k are nearer class k's
# mean training image than any other class's mean, for most k.
image_conditional() {
    local d="$WORK/img-cvae" run="$WORK/img-cvae-run" k
    images classes "$d" 480 4 16 1 classes
    mpi 2 train --data "$d" --conditional --epochs 12 --batch-size 32 --hidden-dim 128 --latent-dim 2 --lr 3e-3 \
        --run-dir "$run" >"$run.out" 2>&1
    cat "$run.out"
    expect "$run.out" "mlp 256-128-2, conditional on 4 classes"
    helpers check-run "$run" 12 48 2 16 16
    for k in 0 1 2 3; do
        "$BINARY" sample --checkpoint "$run" --label "$k" --count 32 --out "$run/class$k.npy" >/dev/null
    done
    "$BINARY" export-data --data "$d" --out "$run/data" >/dev/null
    images check-samples "$run/data/train-images.npy" "$run/data/train-labels.npy" "$run/class" 4
    # The other subcommands take the labels.
    "$BINARY" sample --checkpoint "$run" --out "$run/grid.png" | tee "$run/grid.out"
    expect "$run/grid.out" "8 samples of each of the 4 classes \(one row per class\)"
    "$BINARY" reconstruct --checkpoint "$run" --out "$run/rec.png" >/dev/null
    "$BINARY" interpolate --checkpoint "$run" --from 0 --to 1 --out "$run/int.png" >/dev/null
    "$BINARY" latent-map --checkpoint "$run" --label 2 --out "$run/map" | tee "$run/map.out"
    expect "$run/map.out" "class 2 \(class_2\)"
    "$BINARY" evaluate --checkpoint "$run" --json >"$run/eval.json"
    python3 -c "
import json
e = json.loads(open('$run/eval.json').read())
m = [json.loads(l) for l in open('$run/metrics.jsonl') if '\"eval\"' in l][-1]
assert abs(e['loss'] - m['test_loss']) < 1e-6 * abs(m['test_loss']), (e['loss'], m['test_loss'])
print('evaluate reproduces the last test loss', e['loss'])"
    # Errors: a label out of range; --label on an unconditional model; resuming with --conditional.
    if "$BINARY" sample --checkpoint "$run" --label 4 --out "$run/no.png" >"$run.err" 2>&1; then return 1; fi
    expect "$run.err" "--label: 4 is out of range: the model has 4 classes \(0…3\)"
    if "$BINARY" sample --checkpoint "$WORK/img-layout-classes-run" --label 1 --out "$run/no.png" >"$run.err" 2>&1; then return 1; fi
    expect "$run.err" "--label: .* holds an unconditional model"
    if mpi 2 train --resume "$WORK/img-layout-classes-run" --conditional --epochs 3 >"$run.err" 2>&1; then return 1; fi
    expect "$run.err" "--conditional: cannot change when resuming"
}
