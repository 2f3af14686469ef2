// LAPACK's C interface (Debian: liblapacke-dev; pkg-config `lapacke`): eigenvalues (dgeev) and
// the Levenberg–Marquardt solves (dposv) of the dynamics analysis.
#include <lapacke.h>
