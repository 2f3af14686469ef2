# Sourced by Tools/cellaudit.sh and Tools/test.sh: sets native_flags to the swift build options
# of the build for this machine's CPU (its widest vector unit, and fused multiply-adds in the
# vector math, Sources/CellAuditCore/VectorMath.swift, where an x86-64 CPU has them; arm64 always
# fuses).
native_flags=(-Xswiftc -target-cpu -Xswiftc native)
if [ "$(uname -m)" = x86_64 ] && grep -qw fma /proc/cpuinfo 2>/dev/null; then
    native_flags+=(-Xswiftc -DCELLAUDIT_FMA)
fi
