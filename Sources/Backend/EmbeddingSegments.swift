// Which rows of dOut each embedding-table row gathers in backward, worked out on the host when a
// batch is loaded (its ids are on the host then), so that a device can reduce embedding
// gradients in parallel and deterministically without sorting or atomics:
//   segments: the (table, table row) pairs the batch touches, each with its token rows in order;
//   pieces:   each segment cut into runs of at most `pieceRows` rows.
// Stage 1 sums each piece (one block per piece); a segment of one piece adds its sum straight
// into the table, one of several writes a partial slot per piece; stage 2 adds a multi-piece
// segment's slots into its table row, in order. Every sum has a fixed order: the result does not
// depend on scheduling. Rows the table ignores (padding_idx, ids outside the table) are in no
// segment. CUDA reduces by these (embedding.cu); the CPU kernel walks the rows itself.
//
// The int32 tensor holds, one after another:
//   rows [R] | pieceStart [P+1] | pieceSegment [P] | pieceSlot [P] (−1: the segment's only piece)
//   | segmentTable [U] (0 word, 1 position, 2 type) | segmentRow [U] | multi [M] (segments of
//   several pieces) | multiSlotStart [M+1]
public struct EmbeddingSegments {
    public static let pieceRows = 32
    /// The packed plan on the device (i32); its first `count` elements are this batch's.
    public let tensor: Tensor
    public let rows, pieces, segments, multiPieceSegments, slots: Int
    /// The lookup the plan was made for, and whether it has the token types' segments.
    public let shape: EmbeddingShape
    public let hasTypes: Bool
    public var count: Int { rows + (pieces + 1) + 2 * pieces + 2 * segments + multiPieceSegments + (multiPieceSegments + 1) }

    /// Elements the packed plan of `tokens` tokens can need: rows ≤ 3·BT (three tables), pieces
    /// and segments ≤ rows, and multi-piece segments (over 32 rows each) fewer than rows / 32.
    public static func capacity(tokens: Int) -> Int { let r = 3 * tokens; return r + (r + 1) + 2 * r + 2 * r + 2 * (r / pieceRows + 1) }

    /// The plan of a batch in a tensor of its own (tests, one-off calls).
    public init(ids: [Int32], positions: [Int32], types: [Int32]?, _ s: EmbeddingShape, backend: Backend) throws {
        self.init(ids: ids, positions: positions, types: types, s, into: try backend.allocate(Self.capacity(tokens: s.tokens), .i32),
                  backend: backend)
    }

    /// The plan of a batch (`ids`, `positions`, `types` as the forward reads them), uploaded into `tensor`.
    public init(ids: [Int32], positions: [Int32], types: [Int32]?, _ s: EmbeddingShape, into tensor: Tensor, backend: Backend) {
        precondition(ids.count == s.tokens && positions.count == s.tokens && (types?.count ?? s.tokens) == s.tokens)
        // (table, table row, token row) as one sortable key: the order of every sum.
        var keys: [UInt64] = []
        keys.reserveCapacity(3 * s.tokens)
        func add(_ table: UInt64, _ index: Int32, limit: Int, skip: Int, row: Int) {
            guard index >= 0, Int(index) < limit, Int(index) != skip else { return }
            keys.append(table << 60 | UInt64(index) << 30 | UInt64(row))
        }
        for row in 0..<s.tokens {
            add(0, ids[row], limit: s.vocabulary, skip: s.wordPadding, row: row)
            add(1, positions[row], limit: s.positions, skip: s.positionPadding, row: row)
            if let types, s.tokenTypes > 0 { add(2, types[row], limit: s.tokenTypes, skip: -1, row: row) }   // hasTypes
        }
        keys.sort()
        var pieceStart: [Int32] = [], pieceSegment: [Int32] = [], pieceSlot: [Int32] = []
        var segmentTable: [Int32] = [], segmentRow: [Int32] = [], multi: [Int32] = [], multiSlotStart: [Int32] = [0]
        var slots: Int32 = 0, start = 0
        while start < keys.count {
            let segment = keys[start] >> 30
            var end = start
            while end < keys.count, keys[end] >> 30 == segment { end += 1 }
            let u = Int32(segmentTable.count), several = end - start > Self.pieceRows
            segmentTable.append(Int32(segment >> 30))
            segmentRow.append(Int32(segment & (1 << 30 - 1)))
            for p in stride(from: start, to: end, by: Self.pieceRows) {
                pieceStart.append(Int32(p))
                pieceSegment.append(u)
                pieceSlot.append(several ? slots : -1)
                if several { slots += 1 }
            }
            if several { multi.append(u); multiSlotStart.append(slots) }
            start = end
        }
        pieceStart.append(Int32(keys.count))
        let rows = keys.map { Int32($0 & (1 << 30 - 1)) }
        let packed = rows + pieceStart + pieceSegment + pieceSlot + segmentTable + segmentRow + multi + multiSlotStart
        (self.tensor, self.rows, self.pieces, self.segments) = (tensor, rows.count, pieceSegment.count, segmentTable.count)
        (multiPieceSegments, self.slots) = (multi.count, Int(slots))
        (shape, hasTypes) = (s, types != nil && s.tokenTypes > 0)
        precondition(packed.count == count && count <= tensor.count, "EmbeddingSegments: the plan tensor holds \(tensor.count), this batch needs \(packed.count)")
        packed.withUnsafeBytes { backend.upload(tensor.slice(0, packed.count), $0) }
    }
}
