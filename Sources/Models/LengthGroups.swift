// Inputs of different lengths run in groups of similar lengths: a batch pads every row to its
// longest, so one long text among short ones multiplies their work (serve's forward passes, a
// generation's prefills).

/// The indices of `lengths` in groups of similar lengths, shortest first: sorted by length, a group
/// ends where padding to the next length would cost over a quarter of the group's tokens, at
/// `maxGroup` members, or where the next would take its padded rows past `enoughRows` (a length
/// over it makes a group of its own).
public func similarLengthGroups(_ lengths: [Int], maxGroup: Int, enoughRows: Int = .max) -> [[Int]] {
    precondition(maxGroup > 0, "similarLengthGroups: maxGroup must be positive")
    var groups: [[Int]] = [], group: [Int] = [], tokens = 0
    for i in lengths.indices.sorted(by: { lengths[$0] < lengths[$1] }) {
        if !group.isEmpty && (group.count == maxGroup || (group.count + 1) * lengths[i] > enoughRows
                              || 4 * (group.count + 1) * lengths[i] > 5 * (tokens + lengths[i])) {
            groups.append(group)
            (group, tokens) = ([], 0)
        }
        group.append(i)
        tokens += lengths[i]
    }
    return group.isEmpty ? groups : groups + [group]
}
