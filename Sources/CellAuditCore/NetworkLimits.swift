/// The largest networks CellAudit represents. Sizes a file states rather than shows (a CellAudit
/// model file's metadata, an ONNX node's `hidden_size` and its W's input width) are checked
/// against these before any arithmetic, so that
/// products such as 4·H·(H + I) cannot overflow `Int` however hostile the file: a size of 2^62 is
/// a one-line refusal, not a trap.
public enum NetworkLimits {
    /// Cells per layer, and input channels (2^24: a weight matrix at this size would already hold
    /// 2^50 floats, far beyond any memory).
    public static let maxWidth = 1 << 24
    /// Recurrent layers in a stack.
    public static let maxLayers = 4096

    /// Nil when `size` is a usable width, else the reason, naming `what`.
    public static func problem(width size: Int, _ what: String) -> String? {
        guard size >= 1 else { return "\(what) must be a positive integer, got \(size)" }
        guard size <= maxWidth else { return "\(what) is \(size), more than the \(maxWidth) CellAudit represents" }
        return nil
    }
}
