// cell.h: selects the step of one cell kind by -D CELL_KIND (0 LSTM, 1 GRU, 2 RNN tanh,
// 3 RNN ReLU; CellKind.kernelCode on the host). Define CELL_DECOUPLED, realv and LOADV before
// including it to get the decoupled cells (cells_v, load_cells, CELL_STEP).
#ifndef CELL_H
#define CELL_H
#ifndef CELL_KIND
#error "CELL_KIND must be defined (0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN ReLU)"
#endif

// Gate pre-activation of a decoupled cell: w u + (r h + b).
#define GATE(w, r, b, u, h) fma((w), (realv)(u), fma((r), (h), (b)))

#if CELL_KIND == 0
#include "cell_lstm.h"
#elif CELL_KIND == 1
#include "cell_gru.h"
#elif CELL_KIND == 2 || CELL_KIND == 3
#include "cell_rnn.h"
#else
#error "unknown CELL_KIND"
#endif
#endif
