/// One line of metrics.jsonl: named fields, written as a JSON object with
/// sorted keys. Built from the objective's term names (`ELBOTerms.reported`),
/// so a new term appears here without another list to keep in step.
struct MetricsRecord: Encodable {
    enum Value: Encodable {
        case string(String)
        case int(Int)
        case double(Double)
        case doubles([Double])
        case strings([String])

        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .strings(let v): try c.encode(v)
            case .string(let v): try c.encode(v)
            case .int(let v): try c.encode(v)
            case .double(let v): try c.encode(v)
            case .doubles(let v): try c.encode(v)
            }
        }
    }

    private(set) var fields: [(key: String, value: Value)] = []

    init(type: String) { fields.append(("type", .string(type))) }

    mutating func add(_ key: String, _ value: Value) { fields.append((key, value)) }
    mutating func add(_ key: String, _ value: Double) { add(key, .double(value)) }
    mutating func add(_ key: String, _ value: Int) { add(key, .int(value)) }

    /// The numeric field `key`, if there is one.
    func number(_ key: String) -> Double? {
        switch fields.first(where: { $0.key == key })?.value {
        case .double(let v)?: return v
        case .int(let v)?: return Double(v)
        default: return nil
        }
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for (key, value) in fields { try c.encode(value, forKey: Key(stringValue: key)) }
    }
}
