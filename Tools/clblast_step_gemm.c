/* Times the matrix products one LSTM forward step needs, done by CLBlast on the first OpenCL
 * device: G[S x 4H] += Hprev[S x H] * R^T, for T steps (the per-step GEMM path that the
 * `lstm_layer_forward` kernel replaces by one fused launch). Prints the median wall time of the T
 * products (elementwise gate math excluded, so the GEMM path is flattered).
 *
 *   cc -O2 Tools/clblast_step_gemm.c -lclblast -lOpenCL -o /tmp/clblast_step_gemm
 *   /tmp/clblast_step_gemm S H T      e.g. 360 128 8
 * Needs Debian's libclblast-dev. Used once to choose the forward path (docs/METHOD-CHOICES.md).
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s S H T\n", argv[0]); return 2; }
    size_t S = atoi(argv[1]), H = atoi(argv[2]), T = atoi(argv[3]);
    cl_platform_id platform; cl_device_id device; cl_int err;
    clGetPlatformIDs(1, &platform, NULL);
    clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL);
    cl_context ctx = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    cl_command_queue q = clCreateCommandQueue(ctx, device, 0, &err);
    size_t nh = S * H, nr = 4 * H * H, ng = S * 4 * H;
    float *host = malloc(sizeof(float) * (ng > nr ? ng : nr));
    for (size_t i = 0; i < (ng > nr ? ng : nr); i++) host[i] = (float)rand() / RAND_MAX - 0.5f;
    cl_mem h = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, nh * 4, host, &err);
    cl_mem r = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, nr * 4, host, &err);
    cl_mem g = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, ng * 4, host, &err);
    double times[7];
    for (int rep = 0; rep < 8; rep++) {
        double start = now();
        for (size_t t = 0; t < T; t++) {
            CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                               S, 4 * H, H, 1.0f, h, 0, H, r, 0, H, 1.0f, g, 0, 4 * H, &q, NULL);
            if (s != CLBlastSuccess) { fprintf(stderr, "CLBlastSgemm failed: %d\n", s); return 1; }
        }
        clFinish(q);
        if (rep > 0) times[rep - 1] = now() - start; /* first run compiles the kernels */
    }
    qsort(times, 7, sizeof(double), cmp);
    printf("clblast S=%zu H=%zu T=%zu: %.4f s for the step products, %.3g sequence-steps per second\n",
           S, H, T, times[3], S * T / times[3]);
    return 0;
}
