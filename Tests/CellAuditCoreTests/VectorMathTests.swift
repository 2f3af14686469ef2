@testable import CellAuditCore
import Foundation
import Testing

@Suite struct VectorMathTests {
    /// Dense sweep of [-30, 30] plus the clamping region and exact zero.
    static let points: [Float] = stride(from: Float(-30), through: 30, by: 0.001).map { $0 }
        + [0, -0.0, 1e-30, -1e-30, 88, -87, 100, -100, 1e4, -1e4]

    func lanes(_ f: (Float8) -> Float8) -> [Float] {
        var out: [Float] = []
        for start in stride(from: 0, to: Self.points.count, by: 8) {
            var v = Float8()
            let n = min(8, Self.points.count - start)
            for i in 0..<n { v[i] = Self.points[start + i] }
            let r = f(v)
            for i in 0..<n { out.append(r[i]) }
        }
        return out
    }

    @Test func expIsWithinTwoUlps() {
        for (x, y) in zip(Self.points, lanes(vexp)) where abs(x) <= 80 {
            let want = Foundation.exp(Double(x))
            let ulp = Double(Float(want).ulp)
            #expect(abs(Double(y) - want) <= 2 * ulp, "exp(\(x)) = \(y), want \(want)")
        }
    }

    @Test func sigmoidAndTanhAreAccurateAbsolutely() {
        let s = lanes(vsigmoid), t = lanes(vtanh)
        for (i, x) in Self.points.enumerated() {
            let sw = 1 / (1 + Foundation.exp(-Double(x))), tw = Foundation.tanh(Double(x))
            #expect(abs(Double(s[i]) - sw) <= 3e-7, "sigmoid(\(x)) = \(s[i]), want \(sw)")
            #expect(abs(Double(t[i]) - tw) <= 3e-7, "tanh(\(x)) = \(t[i]), want \(tw)")
            #expect(s[i].isFinite && t[i].isFinite)
        }
        // Near zero tanh keeps its relative accuracy (the small-argument polynomial).
        #expect(lanes(vtanh)[Self.points.firstIndex(of: 1e-30)!] == 1e-30)
    }
}
