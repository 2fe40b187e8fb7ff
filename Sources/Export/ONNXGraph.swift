// A small builder of ONNX graphs over the generated protobuf types (Generated/onnx.pb.swift, made
// by scripts/generate-onnx-proto): initializers from Swift arrays (raw little-endian bytes),
// nodes by op type with their attributes and fresh output names, the graph's typed inputs and
// outputs, and the model around it (IR version, opset, metadata).
import Foundation
import SwiftProtobuf

/// ONNX element types the exporter writes (TensorProto.DataType numbers).
enum ONNXElement: Int32 {
    case float = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7
}

/// A dimension of a graph input or output: a number, or a name for a dynamic axis.
enum ONNXDimension {
    case fixed(Int), named(String)
}

/// A node attribute.
enum ONNXAttribute {
    case int(Int), ints([Int]), float(Float)

    func proto(_ name: String) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        switch self {
        case .int(let v): a.type = .int; a.i = Int64(v)
        case .ints(let v): a.type = .ints; a.ints = v.map(Int64.init)
        case .float(let v): a.type = .float; a.f = v
        }
        return a
    }
}

struct ONNXGraph {
    private(set) var proto = Onnx_GraphProto()
    private var names: Set<String> = []
    private var constants: [String: String] = [:]
    private var nodes = 0

    init(name: String) { proto.name = name }

    /// `hint`, or `hint_2`, `hint_3`… when taken: every value in the graph has its own name.
    mutating func fresh(_ hint: String) -> String {
        var name = hint, n = 1
        while names.contains(name) { n += 1; name = "\(hint)_\(n)" }
        names.insert(name)
        return name
    }

    /// A weight or constant tensor named `name` (made unique).
    @discardableResult
    mutating func initializer<T>(_ name: String, _ values: [T], shape: [Int], _ element: ONNXElement) -> String {
        precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
        var t = Onnx_TensorProto()
        t.name = fresh(name)
        t.dims = shape.map(Int64.init)
        t.dataType = element.rawValue
        t.rawData = values.withUnsafeBytes { Data($0) }   // little-endian on every platform Retort runs on
        proto.initializer.append(t)
        return t.name
    }

    mutating func floats(_ name: String, _ values: [Float], shape: [Int]) -> String { initializer(name, values, shape: shape, .float) }
    mutating func int8s(_ name: String, _ values: [Int8], shape: [Int]) -> String { initializer(name, values, shape: shape, .int8) }

    /// An int64 constant (a scalar when `shape` is empty), made once per value.
    mutating func int64s(_ values: [Int64], shape: [Int]? = nil) -> String {
        let key = "i64 \(shape ?? [values.count]) \(values)"
        if let name = constants[key] { return name }
        let name = initializer(values.count == 1 && shape == [] ? "const_\(values[0])" : "const_i64", values, shape: shape ?? [values.count], .int64)
        constants[key] = name
        return name
    }

    /// A float scalar constant, made once per value.
    mutating func scalar(_ value: Float) -> String {
        let key = "f32 \(value.bitPattern)"
        if let name = constants[key] { return name }
        let name = initializer("const_f", [value], shape: [], .float)
        constants[key] = name
        return name
    }

    /// A node of `op` on `inputs` ("" for an omitted optional input); returns its `outputs` new
    /// values, named `name` (exactly, when that name is still free: a graph output's) or after the op.
    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], outputs: Int = 1, name hint: String? = nil,
                       attributes: [(String, ONNXAttribute)] = []) -> [String] {
        nodes += 1
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = "\(op)_\(nodes)"
        n.input = inputs
        n.output = (0..<outputs).map { fresh(outputs == 1 ? (hint ?? op.lowercased()) : "\(hint ?? op.lowercased())_\($0)") }
        n.attribute = attributes.map { $0.1.proto($0.0) }
        proto.node.append(n)
        return n.output
    }

    /// A one-output node.
    mutating func op(_ op: String, _ inputs: String..., name hint: String? = nil, attributes: [(String, ONNXAttribute)] = []) -> String {
        node(op, inputs, name: hint, attributes: attributes)[0]
    }

    mutating func input(_ name: String, _ element: ONNXElement, _ dims: [ONNXDimension]) {
        names.insert(name)
        proto.input.append(Self.valueInfo(name, element, dims))
    }

    mutating func output(_ name: String, _ element: ONNXElement, _ dims: [ONNXDimension]) {
        proto.output.append(Self.valueInfo(name, element, dims))
    }

    static func valueInfo(_ name: String, _ element: ONNXElement, _ dims: [ONNXDimension]) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { d in
            var dimension = Onnx_TensorShapeProto.Dimension()
            switch d {
            case .fixed(let n): dimension.dimValue = Int64(n)
            case .named(let s): dimension.dimParam = s
            }
            return dimension
        }
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = element.rawValue
        tensor.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensor
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        return info
    }

    /// The model: this graph at IR version 8 with the default-domain opset `opset`.
    func model(opset: Int, producer: String, version: String, metadata: [(String, String)]) -> Onnx_ModelProto {
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var set = Onnx_OperatorSetIdProto()
        set.domain = ""
        set.version = Int64(opset)
        m.opsetImport = [set]
        m.producerName = producer
        m.producerVersion = version
        m.graph = proto
        m.metadataProps = metadata.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        return m
    }
}
