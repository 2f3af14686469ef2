/// Every numeric default of CellAudit's methods in one place, beside the tolerances
/// (`Tolerance`). The library's parameters and the CLI's options take their defaults from here,
/// so a default is changed once and the help texts follow. docs/METHOD.md gives the reason for
/// each value.
public enum Defaults {
    /// Observation window after a stimulus's onset, in steps (METHOD.md §3).
    public static let window = 400
    /// Settling band, as a fraction of the step's total change |Δ| (METHOD.md §4).
    public static let settlingBand: Float = 0.02
    /// Largest change of a cell's unstimulated run for it to count as at rest (METHOD.md §4).
    public static let restTolerance: Float = 1e-5
    /// The ε of LRP's ε-rule (Arras et al. 2019; METHOD.md §7).
    public static let relevanceEpsilon: Float = 0.001
    /// The share of a linear map's bias that LRP redistributes (0: none, as Arras et al.).
    public static let relevanceBiasFactor: Float = 0
    /// Random orders averaged into the ablation's random curve.
    public static let ablationRandomSeeds = 5
    /// Fixed-point search seeds per layer (`attractors`), and the audit's smaller run.
    public static let fixedPointSeeds = 1024
    public static let auditFixedPointSeeds = 256
    /// The size of one chunk of a dataset (`DatasetStream`: sequences × steps × the forward pass's
    /// widest per-step footprint, in bytes): every command reads, and keeps, one chunk of
    /// sequences at a time, so its memory does not grow with the dataset.
    public static let datasetChunkBytes = 64 << 20
    /// Largest pulse amplitude the excitable network's bisection tries.
    public static let pulseMaxAmplitude: Double = 4
}
