// libFuzzer's entry point for programs that have their own main (LLVM, FuzzerInterface.h). Only
// declared here: the symbol exists when a program is linked with -sanitize=fuzzer (Tools/fuzz.sh).
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
