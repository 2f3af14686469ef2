#ifndef CELLAUDIT_COPENCL_SHIM_H
#define CELLAUDIT_COPENCL_SHIM_H
// CellAudit targets the OpenCL 1.2 API: it is what PoCL, NVIDIA, AMD and Intel all offer.
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#endif
