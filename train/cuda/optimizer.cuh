// The optimizer step of the cuda backend (be->optim_step): train/optim.h's Adam and SGD
// as kernels over device arrays. Part of backend_cuda.cu's one translation unit. CPU twin:
// train/backend_cpu.c cpu_optim_step (train/optim.c adam_update, sgd_update).

// ----------------------------------------------------------------------------
// optimiser (train/optim.h's rules on device arrays)

// params, grads, m, v: (n,). adam_update of train/optim.c: every rounding as there.
__global__ void adam_kernel(int64_t n, float *params, const float *grads, float *m, float *v,
                            float beta1, float beta2, float one_minus_beta1, float one_minus_beta2,
                            float weight_decay, int decay, float neg_step_size,
                            float bias_correction2_sqrt, float eps) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float p = params[i];
        float g = decay ? fmaf(p, weight_decay, grads[i]) : grads[i];
        float mi = fmaf(g, one_minus_beta1, __fmul_rn(m[i], beta1));
        float vi = fmaf(__fmul_rn(one_minus_beta2, g), g, __fmul_rn(v[i], beta2));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bias_correction2_sqrt), eps);
        params[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));
    }
}

// params, grads, buf: (n,). sgd_update of train/optim.c (dampening 0, no Nesterov).
__global__ void sgd_kernel(int64_t n, float *params, const float *grads, float *buf, float momentum,
                           float weight_decay, int decay, float neg_lr, int first_step) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float p = params[i];
        float d = decay ? fmaf(p, weight_decay, grads[i]) : grads[i];
        if (buf) {
            float b = first_step ? d : __fadd_rn(__fmul_rn(buf[i], momentum), d);
            buf[i] = b;
            d = b;
        }
        params[i] = fmaf(d, neg_lr, p);
    }
}

static int cuda_optim_step(wsml_backend *be, wsml_optim *o, int g, float *params,
                           const float *grads, float *exp_avg, float *exp_avg_sq) {
    burst_begin(be);
    const char *op = "optimizer";
    if (g < 0 || g >= o->num_groups)
        return wsml_errf(&be->err, WSML_EARG, "optimizer: no parameter group %d", g);
    wsml_optim_group *grp = &o->group[g];
    const wsml_optim_config *cfg = &o->cfg;
    const int64_t n = (int64_t)grp->count;
    const int adam = cfg->kind == WSML_OPTIM_ADAM;
    if ((adam && (!exp_avg || !exp_avg_sq)) || (!adam && cfg->momentum != 0 && !exp_avg))
        return wsml_errf(&be->err, WSML_EARG, "optimizer: group '%s' needs its state arrays",
                         grp->name);
    grp->step++;
    if (n == 0)
        return 0;
    cudaStream_t st = impl_of(be)->stream;
    if (adam) {
        // host-side scalars exactly as adam_update computes them
        const double bc1 = 1 - pow(cfg->beta1, (double)grp->step);
        const double bc2 = 1 - pow(cfg->beta2, (double)grp->step);
        adam_kernel<<<grid_for(be, n), THREADS, 0, st>>>(
            n, params, grads, exp_avg, exp_avg_sq, (float)cfg->beta1, (float)cfg->beta2,
            (float)(1 - cfg->beta1), (float)(1 - cfg->beta2), (float)cfg->weight_decay,
            cfg->weight_decay != 0, (float)(-(grp->lr / bc1)), (float)sqrt(bc2), (float)cfg->eps);
        LAUNCH_TRY(op, "adam_kernel");
    } else {
        sgd_kernel<<<grid_for(be, n), THREADS, 0, st>>>(
            n, params, grads, cfg->momentum != 0 ? exp_avg : NULL, (float)cfg->momentum,
            (float)cfg->weight_decay, cfg->weight_decay != 0, (float)(-grp->lr), grp->step == 1);
        LAUNCH_TRY(op, "sgd_kernel");
    }
    return 0;
}
