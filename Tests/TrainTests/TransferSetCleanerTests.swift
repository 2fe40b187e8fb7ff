// Cleaning a generated transfer set: every rule drops what it should and counts it, and the texts
// that pass are kept normalised (spaces collapsed).
import Foundation
import Train
import XCTest

final class TransferSetCleanerTests: XCTestCase {
    func testEveryRuleDropsAndCountsWhatItShould() {
        var rules = TransferSetCleaner.Rules()
        rules.minCharacters = 10; rules.maxCharacters = 80; rules.ngram = 3; rules.nearDuplicate = 0.6
        var cleaner = TransferSetCleaner(rules: rules, training: ["the film is a quiet triumph of small moments", "a dull and tired sequel"])
        let cases: [(String, TransferSetCleaner.Reason?)] = [
            ("   ", .empty),
            ("bad bytes \u{FFFD} here in it", .garbled),
            ("a bell \u{07} rings in the night", .garbled),
            ("12345 67890 !!! ??? ...", .garbled),
            ("too short", .tooShort),
            (String(repeating: "long words ", count: 10), .tooLong),
            ("A  dull and tired   SEQUEL", .copiesTraining),
            ("the film is a quiet triumph of small moments indeed", .nearTraining),
            ("an entirely new sentence about a lovely cast", nil),
            ("an entirely new sentence about a lovely cast", .repeatsGenerated),
            ("an entirely new sentence about a lovely cast and crew", .nearGenerated),
            ("nothing like the others here at all", nil),
        ]
        for (text, reason) in cases {
            let before = cleaner.dropped
            let kept = cleaner.admit(text)
            if let reason {
                XCTAssertNil(kept, "'\(text)' should be dropped: \(reason.rawValue)")
                XCTAssertEqual(cleaner.dropped[reason, default: 0], before[reason, default: 0] + 1, "'\(text)': \(reason.rawValue)")
            } else {
                XCTAssertEqual(kept, TransferSetCleaner.normalised(text), "'\(text)' should be kept")
            }
        }
        XCTAssertEqual(cleaner.kept, 2)
        XCTAssertEqual(cleaner.dropped.values.reduce(0, +), cases.count - 2)
        XCTAssertTrue(cleaner.summary(generated: cases.count).hasPrefix("kept 2 of 12 generated texts; dropped: empty: 1, garbled: 3"),
                      cleaner.summary(generated: cases.count))
    }

    func testNearDuplicatesCanBeTurnedOff() {
        var rules = TransferSetCleaner.Rules()
        rules.nearDuplicate = 1.1
        var cleaner = TransferSetCleaner(rules: rules, training: ["the film is a quiet triumph of small moments"])
        XCTAssertNotNil(cleaner.admit("the film is a quiet triumph of small moments indeed"))
    }
}
