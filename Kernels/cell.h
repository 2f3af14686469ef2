// cell.h: selects the step of one cell kind by -D CELL_KIND, compared with the kind names the host
// defines beside it (CELL_KIND_LSTM, CELL_KIND_GRU, CELL_KIND_RNN_TANH, CELL_KIND_RNN_RELU; generated
// from CellKind by OpenCLBackend.cellDefines). Define CELL_DECOUPLED, realv and LOADV before
// including it to get the decoupled cells (cells_v, load_cells, CELL_STEP).
#ifndef CELL_H
#define CELL_H
#ifndef CELL_KIND
#error "CELL_KIND must be defined (the host defines it and CELL_KIND_LSTM, _GRU, _RNN_TANH, _RNN_RELU: OpenCLBackend.cellDefines)"
#endif

// PEEPHOLE=1: the LSTM's peephole variant (cell_lstm.h); 0 for every other cell.
#ifndef PEEPHOLE
#define PEEPHOLE 0
#endif

// Gate pre-activation of a decoupled cell: w u + (r h + b).
#define GATE(w, r, b, u, h) fma((w), (realv)(u), fma((r), (h), (b)))

#if CELL_KIND == CELL_KIND_LSTM
#include "cell_lstm.h"
#elif CELL_KIND == CELL_KIND_GRU
#include "cell_gru.h"
#elif CELL_KIND == CELL_KIND_RNN_TANH || CELL_KIND == CELL_KIND_RNN_RELU
#include "cell_rnn.h"
#else
#error "unknown CELL_KIND"
#endif
#endif
