// similarLengthGroups: the groups serve's forward passes and a generation's prefills run in.
import Models
import XCTest

final class LengthGroupsTests: XCTestCase {
    func testGroupsAreSortedBoundedAndPadLittle() {
        let lengths = [5, 100, 6, 7, 95, 1, 98]
        // Sorted 1, 5, 6, 7, 95, 98, 100: 1 then 5 would pad 1 to 5 (10 tokens for 6); 5, 6, 7
        // stop at the three a group may hold; 95, 98, 100 pad 7 tokens of 293.
        XCTAssertEqual(similarLengthGroups(lengths, maxGroup: 3), [[5], [0, 2, 3], [4, 6, 1]])
        XCTAssertEqual(similarLengthGroups(lengths, maxGroup: 7), [[5], [0, 2, 3], [4, 6, 1]])
        XCTAssertEqual(similarLengthGroups(lengths, maxGroup: 1), [[5], [0], [2], [3], [4], [6], [1]])
        XCTAssertEqual(similarLengthGroups(lengths, maxGroup: 2), [[5], [0, 2], [3], [4, 6], [1]])
        XCTAssertEqual(similarLengthGroups([], maxGroup: 4), [])
        // A group holds at most enoughRows padded rows, a longer length alone: 95 and 98 pad to 196.
        XCTAssertEqual(similarLengthGroups(lengths, maxGroup: 7, enoughRows: 90), [[5], [0, 2, 3], [4], [6], [1]])
        XCTAssertEqual(similarLengthGroups(lengths, maxGroup: 7, enoughRows: 195), [[5], [0, 2, 3], [4], [6], [1]])
        XCTAssertEqual(similarLengthGroups(lengths, maxGroup: 7, enoughRows: 196), [[5], [0, 2, 3], [4, 6], [1]])
        var state: UInt64 = 5
        let random = (0..<200).map { _ -> Int in state = state &* 6_364_136_223_846_793_005 &+ 1; return 1 + Int((state >> 33) % 700) }
        let groups = similarLengthGroups(random, maxGroup: 8, enoughRows: 1000)
        XCTAssertEqual(groups.flatMap { $0 }.sorted(), Array(random.indices), "every index once")
        for (g, group) in groups.enumerated() {
            let sizes = group.map { random[$0] }
            XCTAssertLessThanOrEqual(group.count, 8)
            XCTAssertTrue(group.count == 1 || group.count * sizes.max()! <= 1000, "group \(g) over 1,000 rows")
            XCTAssertLessThanOrEqual(4 * group.count * sizes.max()!, 5 * sizes.reduce(0, +), "group \(g) pads over a quarter of its tokens")
            if g > 0 { XCTAssertLessThanOrEqual(groups[g - 1].map { random[$0] }.max()!, sizes.min()!, "groups \(g - 1) and \(g) out of order") }
        }
    }
}
