// report.html: the comparison table and two inline SVG charts (training loss of every run on a
// log scale; metric against B=1 latency), no scripts, no external files.
import Foundation

extension ComparisonReport {
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    var html: String {
        let header = Self.columns.map { "<th>\(escape($0))</th>" }.joined()
        let body = rows.enumerated().map { i, r in
            "<tr><td><span class=\"dot\" style=\"background:\(Self.palette[i % 8])\"></span>" + cells(r).enumerated().map { j, c in
                j == 0 ? escape(c) + "</td>" : "<td>\(escape(c))</td>"
            }.joined() + "</tr>"
        }.joined(separator: "\n")
        let length = rows.first?.speed.length ?? 64
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Retort comparison</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
            table { border-collapse: collapse; font-size: 14px; }
            th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
            td:first-child { white-space: nowrap; }
            th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
            .dot { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 6px; }
            .charts { display: flex; flex-wrap: wrap; gap: 2em; margin-top: 2em; }
            svg text { font-size: 12px; fill: #333; }
            </style></head><body>
            <h1>Retort comparison</h1>
            <p>Speed on \(escape(device)); sequences of \(length) tokens. Speed-up: the first row's B=1 latency over each row's. The final train loss is each run's own objective (cross-entropy when fine-tuning, the distillation loss for a student), so it compares runs of one method only.</p>
            <table><tr>\(header)</tr>
            \(body)
            </table>
            \(notes.map { "<p><b>Note:</b> \(escape($0)).</p>" }.joined(separator: "\n"))
            <div class="charts">
            \(lossChart)
            \(scatterChart)
            </div>
            </body></html>

            """
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Every run's training loss (moving average over 10 steps) against the step, log-scale y.
    var lossChart: String {
        let (W, H, left, right, top, bottom) = (560.0, 360.0, 60.0, 20.0, 30.0, 40.0)
        let curves = rows.map { r -> [Double] in
            let v = r.losses.filter { $0.isFinite && $0 > 0 }
            return v.indices.map { i in let w = v[max(0, i - 9)...i]; return w.reduce(0, +) / Double(w.count) }
        }
        let all = curves.flatMap { $0 }
        guard let lowest = all.min(), let highest = all.max() else {
            return "<svg width=\"\(Int(W))\" height=\"60\"><text x=\"10\" y=\"30\">No training logs (log.jsonl) in these folders.</text></svg>"
        }
        let lo = floor(log10(lowest)), hi = max(ceil(log10(highest)), lo + 1)
        let steps = Double(max(curves.map(\.count).max() ?? 1, 2) - 1)
        func x(_ i: Int) -> Double { left + (W - left - right) * Double(i) / steps }
        func y(_ v: Double) -> Double { top + (H - top - bottom) * (hi - log10(v)) / (hi - lo) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\">"
        svg += "<text x=\"\(left)\" y=\"18\" style=\"font-weight:bold\">Training loss (10-step average, log scale)</text>"
        var decade = lo
        while decade <= hi {
            for m in [1.0, 2.0, 5.0] where decade + log10(m) <= hi {
                let value = pow(10, decade) * m, yy = y(value)
                svg += "<line x1=\"\(left)\" x2=\"\(W - right)\" y1=\"\(yy)\" y2=\"\(yy)\" stroke=\"#eee\"/>"
                svg += "<text x=\"\(left - 6)\" y=\"\(yy + 4)\" text-anchor=\"end\">\(shortNumber(value))</text>"
            }
            decade += 1
        }
        for t in stride(from: 0.0, through: 1.0, by: 0.25) {
            let i = Int(t * steps)
            svg += "<text x=\"\(x(i))\" y=\"\(H - bottom + 16)\" text-anchor=\"middle\">\(i)</text>"
        }
        svg += "<text x=\"\((W + left) / 2)\" y=\"\(H - 6)\" text-anchor=\"middle\">step (all stages in order)</text>"
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(W - left - right)\" height=\"\(H - top - bottom)\" fill=\"none\" stroke=\"#999\"/>"
        for (i, curve) in curves.enumerated() where !curve.isEmpty {
            let points = curve.enumerated().map { String(format: "%.1f,%.1f", x($0.offset), y($0.element)) }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(Self.palette[i % 8])\" stroke-width=\"1.5\" points=\"\(points)\"><title>\(escape(rows[i].name))</title></polyline>"
        }
        return svg + legend(x: W - right - 170, y: top + 8) + "</svg>"
    }

    /// Metric (accuracy) against B=1 latency, one labelled point per model.
    var scatterChart: String {
        let (W, H, left, right, top, bottom) = (480.0, 360.0, 60.0, 30.0, 30.0, 40.0)
        let points = rows.enumerated().compactMap { i, r in r.metrics.map { (i, r.speed.latencyMilliseconds, $0.accuracy) } }
        guard !points.isEmpty else {
            return "<svg width=\"\(Int(W))\" height=\"60\"><text x=\"10\" y=\"30\">No metrics to plot.</text></svg>"
        }
        let xMax = (points.map(\.1).max()! * 1.15), yLo = points.map(\.2).min()! - 0.02, yHi = points.map(\.2).max()! + 0.02
        func x(_ v: Double) -> Double { left + (W - left - right) * v / xMax }
        func y(_ v: Double) -> Double { top + (H - top - bottom) * (yHi - v) / (yHi - yLo) }
        let source = rows.first(where: { $0.metricSource != "–" })?.metricSource ?? "test"
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\">"
        svg += "<text x=\"\(left)\" y=\"18\" style=\"font-weight:bold\">\(source.capitalized) accuracy against latency (B=1)</text>"
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(W - left - right)\" height=\"\(H - top - bottom)\" fill=\"none\" stroke=\"#999\"/>"
        for k in 0...4 {
            let v = yLo + (yHi - yLo) * Double(k) / 4, xv = xMax * Double(k) / 4
            svg += "<text x=\"\(left - 6)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(String(format: "%.3f", v))</text>"
            svg += "<line x1=\"\(left)\" x2=\"\(W - right)\" y1=\"\(y(v))\" y2=\"\(y(v))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(x(xv))\" y=\"\(H - bottom + 16)\" text-anchor=\"middle\">\(String(format: "%.1f", xv))</text>"
        }
        svg += "<text x=\"\((W + left) / 2)\" y=\"\(H - 6)\" text-anchor=\"middle\">ms per sequence</text>"
        for (i, latency, accuracy) in points {
            svg += "<circle cx=\"\(x(latency))\" cy=\"\(y(accuracy))\" r=\"6\" fill=\"\(Self.palette[i % 8])\"><title>\(escape(rows[i].name))</title></circle>"
            svg += "<text x=\"\(x(latency) + 9)\" y=\"\(y(accuracy) - 7)\">\(escape(rows[i].name))</text>"
        }
        return svg + "</svg>"
    }

    func legend(x: Double, y: Double) -> String {
        rows.enumerated().map { i, r in
            let yy = y + Double(i) * 16
            return "<rect x=\"\(x)\" y=\"\(yy)\" width=\"12\" height=\"3\" fill=\"\(Self.palette[i % 8])\"/>"
                + "<text x=\"\(x + 18)\" y=\"\(yy + 5)\">\(escape(r.name))</text>"
        }.joined()
    }

    func shortNumber(_ v: Double) -> String {
        v >= 1 ? String(format: "%g", v) : String(format: "%g", (v * 1e6).rounded() / 1e6)
    }
}
