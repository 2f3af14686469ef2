@testable import CellAuditCore
import Foundation
import Testing

@Suite struct VectorMathTests {
    /// Dense sweep of [-30, 30], a geometric sweep of tiny magnitudes, the clamping regions and
    /// exact zeros.
    static let points: [Float] = stride(from: Float(-30), through: 30, by: 0.001).map { $0 }
        + (0..<400).flatMap { k -> [Float] in let x = Float(pow(10, -30 + 0.075 * Double(k))); return [x, -x] }
        + [0, -0.0, 9.5, -9.5, 9.6, -9.6, 88, -87, 100, -100, 1e4, -1e4]

    func lanes(_ f: (Float32x16) -> Float32x16) -> [Float] {
        var out: [Float] = []
        for start in stride(from: 0, to: Self.points.count, by: 16) {
            var v = Float32x16()
            let n = min(16, Self.points.count - start)
            for i in 0..<n { v[i] = Self.points[start + i] }
            let r = f(v)
            for i in 0..<n { out.append(r[i]) }
        }
        return out
    }

    /// |got − want| in units of the Float spacing at `want`.
    func ulps(_ got: Float, _ want: Double) -> Double {
        abs(Double(got) - want) / Double(Float(want).magnitude.ulp)
    }

    @Test func expIsWithinTwoUlps() {
        for (x, y) in zip(Self.points, lanes(vexp)) where abs(x) <= 80 {
            let want = Foundation.exp(Double(x))
            #expect(ulps(y, want) <= 2, "exp(\(x)) = \(y), want \(want)")
        }
    }

    @Test func sigmoidIsRelativelyAccurateEvenWhenTiny() {
        for (x, y) in zip(Self.points, lanes(vsigmoid)) {
            let want = 1 / (1 + Foundation.exp(-Double(x)))
            guard want > 1e-37 else { #expect(y >= 0 && y < 1e-36); continue }
            #expect(ulps(y, want) <= 4, "sigmoid(\(x)) = \(y), want \(want)")
        }
    }

    @Test func tanhIsWithinEightUlpsEverywhere() {
        for (x, y) in zip(Self.points, lanes(vtanh)) {
            let want = Foundation.tanh(Double(x))
            #expect(ulps(y, want) <= 8, "tanh(\(x)) = \(y), want \(want)")
            #expect(abs(y) <= 1)
        }
        // Relative accuracy near zero: tanh(x) = x to Float precision for tiny x.
        let tiny = lanes(vtanh)[Self.points.firstIndex(of: 1e-30)!]
        #expect(abs(tiny - 1e-30) <= 1e-30 * 1e-6)
    }

    @Test func nanPropagates() {
        let v = Float32x16(repeating: .nan)
        #expect(vexp(v)[0].isNaN && vsigmoid(v)[3].isNaN && vtanh(v)[15].isNaN)
    }
}
