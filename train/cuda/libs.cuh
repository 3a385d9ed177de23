// The cuda backend's loading of cuDNN and cuBLAS (dlopen at the first backend made, each
// function through a pointer that keeps the library's own name). Part of
// backend_cuda.cu's one translation unit (like llm.c's llmc/*.cuh): included there first.
// CPU twin: none (OpenBLAS is linked; train/backend_cpu.c).

// ----------------------------------------------------------------------------
// cuDNN and cuBLAS are loaded with dlopen when the first cuda backend is made, not linked:
// libcublasLt alone costs ~2 s of start-up in EVERY process that links it (measured here:
// an empty main() linked with -lcublas takes 2.2 s), which would slow every CPU-only run
// of wsml-train/wsml-eval and every Criterion test process. The CUDA runtime is static
// (libcudart_static) and cheap. Each call site below keeps the library's own name: the
// macros after the table turn it into a call through the loaded pointer.

#define WSML_STR2(x) #x
#define WSML_STR(x) WSML_STR2(x)
#define CUDNN_SONAME "libcudnn.so." WSML_STR(CUDNN_MAJOR)
#define CUBLAS_SONAME "libcublas.so." WSML_STR(CUBLAS_VER_MAJOR)

#define CUDNN_FUNCS(X)                                                                             \
    X(cudnnGetVersion)                                                                             \
    X(cudnnGetErrorString)                                                                         \
    X(cudnnGetLastErrorString)                                                                     \
    X(cudnnCreate)                                                                                 \
    X(cudnnDestroy)                                                                                \
    X(cudnnSetStream)                                                                              \
    X(cudnnCreateTensorDescriptor)                                                                 \
    X(cudnnDestroyTensorDescriptor)                                                                \
    X(cudnnSetTensor4dDescriptor)                                                                  \
    X(cudnnCreateFilterDescriptor)                                                                 \
    X(cudnnDestroyFilterDescriptor)                                                                \
    X(cudnnSetFilter4dDescriptor)                                                                  \
    X(cudnnCreateConvolutionDescriptor)                                                            \
    X(cudnnDestroyConvolutionDescriptor)                                                           \
    X(cudnnSetConvolution2dDescriptor)                                                             \
    X(cudnnSetConvolutionMathType)                                                                 \
    X(cudnnGetConvolutionForwardAlgorithm_v7)                                                      \
    X(cudnnFindConvolutionForwardAlgorithm)                                                        \
    X(cudnnGetConvolutionForwardWorkspaceSize)                                                     \
    X(cudnnConvolutionForward)                                                                     \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                                 \
    X(cudnnFindConvolutionBackwardDataAlgorithm)                                                   \
    X(cudnnGetConvolutionBackwardDataWorkspaceSize)                                                \
    X(cudnnConvolutionBackwardData)                                                                \
    X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                               \
    X(cudnnFindConvolutionBackwardFilterAlgorithm)                                                 \
    X(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                              \
    X(cudnnConvolutionBackwardFilter)
#define CUBLAS_FUNCS(X)                                                                            \
    X(cublasCreate_v2)                                                                             \
    X(cublasDestroy_v2)                                                                            \
    X(cublasSetStream_v2)                                                                          \
    X(cublasSetMathMode)                                                                           \
    X(cublasSetWorkspace_v2)                                                                       \
    X(cublasSgemm_v2)                                                                              \
    X(cublasGetStatusString)                                                                       \
    X(cublasGetStatusName)                                                                         \
    X(cublasGetProperty)

#define DECLARE_POINTER(name) static decltype(&::name) dl_##name;
CUDNN_FUNCS(DECLARE_POINTER)
CUBLAS_FUNCS(DECLARE_POINTER)
#undef DECLARE_POINTER
// cublasGemmEx is overloaded in C++ (cublas_api.h adds a cudaDataType compute-type form):
// the C entry point's own signature.
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                     int, const void *, const void *, cudaDataType, int,
                                     const void *, cudaDataType, int, const void *, void *,
                                     cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
static gemm_ex_fn dl_cublasGemmEx;

static pthread_once_t libs_once = PTHREAD_ONCE_INIT;
static char libs_error[512]; // empty when both libraries and every symbol were found

static void load_libraries_once(void) {
    void *cudnn = dlopen(CUDNN_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!cudnn) {
        snprintf(libs_error, sizeof libs_error,
                 "cannot load cuDNN: %s (put cuDNN %d's lib directory on LD_LIBRARY_PATH)",
                 dlerror(), CUDNN_MAJOR);
        return;
    }
    void *cublas = dlopen(CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!cublas) {
        snprintf(libs_error, sizeof libs_error,
                 "cannot load cuBLAS: %s (put cuBLAS %d's lib directory on LD_LIBRARY_PATH)",
                 dlerror(), CUBLAS_VER_MAJOR);
        return;
    }
#define RESOLVE(lib, soname, name)                                                                 \
    dl_##name = (decltype(dl_##name))dlsym(lib, #name);                                            \
    if (!dl_##name) {                                                                              \
        snprintf(libs_error, sizeof libs_error, "%s has no %s (too old?)", soname, #name);         \
        return;                                                                                    \
    }
#define RESOLVE_CUDNN(name) RESOLVE(cudnn, CUDNN_SONAME, name)
#define RESOLVE_CUBLAS(name) RESOLVE(cublas, CUBLAS_SONAME, name)
    CUDNN_FUNCS(RESOLVE_CUDNN)
    CUBLAS_FUNCS(RESOLVE_CUBLAS)
    RESOLVE_CUBLAS(cublasGemmEx)
#undef RESOLVE_CUDNN
#undef RESOLVE_CUBLAS
#undef RESOLVE
}

// 0, or -1 with the reason in libs_error. The handles stay open for the process.
static int load_libraries(void) {
    pthread_once(&libs_once, load_libraries_once);
    return libs_error[0] ? -1 : 0;
}

#define cudnnGetVersion dl_cudnnGetVersion
#define cudnnGetErrorString dl_cudnnGetErrorString
#define cudnnGetLastErrorString dl_cudnnGetLastErrorString
#define cudnnCreate dl_cudnnCreate
#define cudnnDestroy dl_cudnnDestroy
#define cudnnSetStream dl_cudnnSetStream
#define cudnnCreateTensorDescriptor dl_cudnnCreateTensorDescriptor
#define cudnnDestroyTensorDescriptor dl_cudnnDestroyTensorDescriptor
#define cudnnSetTensor4dDescriptor dl_cudnnSetTensor4dDescriptor
#define cudnnCreateFilterDescriptor dl_cudnnCreateFilterDescriptor
#define cudnnDestroyFilterDescriptor dl_cudnnDestroyFilterDescriptor
#define cudnnSetFilter4dDescriptor dl_cudnnSetFilter4dDescriptor
#define cudnnCreateConvolutionDescriptor dl_cudnnCreateConvolutionDescriptor
#define cudnnDestroyConvolutionDescriptor dl_cudnnDestroyConvolutionDescriptor
#define cudnnSetConvolution2dDescriptor dl_cudnnSetConvolution2dDescriptor
#define cudnnSetConvolutionMathType dl_cudnnSetConvolutionMathType
#define cudnnGetConvolutionForwardAlgorithm_v7 dl_cudnnGetConvolutionForwardAlgorithm_v7
#define cudnnFindConvolutionForwardAlgorithm dl_cudnnFindConvolutionForwardAlgorithm
#define cudnnGetConvolutionForwardWorkspaceSize dl_cudnnGetConvolutionForwardWorkspaceSize
#define cudnnConvolutionForward dl_cudnnConvolutionForward
#define cudnnGetConvolutionBackwardDataAlgorithm_v7 dl_cudnnGetConvolutionBackwardDataAlgorithm_v7
#define cudnnFindConvolutionBackwardDataAlgorithm dl_cudnnFindConvolutionBackwardDataAlgorithm
#define cudnnGetConvolutionBackwardDataWorkspaceSize dl_cudnnGetConvolutionBackwardDataWorkspaceSize
#define cudnnConvolutionBackwardData dl_cudnnConvolutionBackwardData
#define cudnnGetConvolutionBackwardFilterAlgorithm_v7                                              \
    dl_cudnnGetConvolutionBackwardFilterAlgorithm_v7
#define cudnnFindConvolutionBackwardFilterAlgorithm dl_cudnnFindConvolutionBackwardFilterAlgorithm
#define cudnnGetConvolutionBackwardFilterWorkspaceSize                                             \
    dl_cudnnGetConvolutionBackwardFilterWorkspaceSize
#define cudnnConvolutionBackwardFilter dl_cudnnConvolutionBackwardFilter
// cublas_v2.h already maps cublasCreate -> cublasCreate_v2 etc.; rescanning lands here.
#define cublasCreate_v2 dl_cublasCreate_v2
#define cublasDestroy_v2 dl_cublasDestroy_v2
#define cublasSetStream_v2 dl_cublasSetStream_v2
#define cublasSetMathMode dl_cublasSetMathMode
#define cublasSetWorkspace_v2 dl_cublasSetWorkspace_v2
#define cublasSgemm_v2 dl_cublasSgemm_v2
#define cublasGemmEx dl_cublasGemmEx
#define cublasGetStatusString dl_cublasGetStatusString
#define cublasGetStatusName dl_cublasGetStatusName
#define cublasGetProperty dl_cublasGetProperty
