// Class activation maps: upsampling, normalisation, colour map, overlay, and running a
// checkpoint to get them (see cam/cam.h; docs/methods.md §5).
#include "cam/cam.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "train/net.h"
#include "train/predict.h"

// ---- maps ------------------------------------------------------------------------------

// One axis of the bilinear rule: for each output index, the two source indices and the
// weight of the second (PyTorch's area_pixel_compute_source_index, align_corners=False).
static void linear_taps(int in, int out, int *i0, int *i1, double *frac) {
    double scale = (double)in / out;
    for (int d = 0; d < out; d++) {
        double s = (d + 0.5) * scale - 0.5;
        if (s < 0)
            s = 0;
        int lo = (int)s;
        if (lo > in - 1)
            lo = in - 1;
        i0[d] = lo;
        i1[d] = lo < in - 1 ? lo + 1 : lo;
        frac[d] = s - lo;
    }
}

// in: (h, w) -> out: (H, W)
int wsml_cam_upsample(const float *in, int h, int w, float *out, int H, int W) {
    int *y0 = malloc(sizeof(int) * 2 * ((size_t)H + W));
    double *fy = malloc(sizeof(double) * ((size_t)H + W));
    if (!y0 || !fy) {
        free(y0), free(fy);
        return WSML_ENOMEM;
    }
    int *y1 = y0 + H, *x0 = y0 + 2 * H, *x1 = x0 + W;
    double *fx = fy + H;
    linear_taps(h, H, y0, y1, fy);
    linear_taps(w, W, x0, x1, fx);
    for (int y = 0; y < H; y++) {
        const float *r0 = in + (size_t)y0[y] * w, *r1 = in + (size_t)y1[y] * w;
        double b = fy[y], a = 1.0 - b;
        for (int x = 0; x < W; x++) {
            double d = fx[x], c = 1.0 - d;
            out[(size_t)y * W + x] =
                (float)(a * (c * r0[x0[x]] + d * r0[x1[x]]) + b * (c * r1[x0[x]] + d * r1[x1[x]]));
        }
    }
    free(y0);
    free(fy);
    return 0;
}

// map: (n)
void wsml_cam_normalise(float *map, size_t n) {
    float max = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(map[i] > 0)) // ReLU (NaN becomes 0 too)
            map[i] = 0;
        if (map[i] > max)
            max = map[i];
    }
    if (max > 0)
        for (size_t i = 0; i < n; i++)
            map[i] /= max;
}

// matplotlib's _jet_data (matplotlib/_cm.py): per channel, (x, y0, y1) break points.
typedef struct {
    int n;
    double p[6][3];
} segments;
static const segments JET[3] = {
    {5, {{0., 0, 0}, {0.35, 0, 0}, {0.66, 1, 1}, {0.89, 1, 1}, {1, 0.5, 0.5}}},
    {6, {{0., 0, 0}, {0.125, 0, 0}, {0.375, 1, 1}, {0.64, 1, 1}, {0.91, 0, 0}, {1, 0, 0}}},
    {5, {{0., 0.5, 0.5}, {0.11, 1, 1}, {0.34, 1, 1}, {0.65, 0, 0}, {1, 0, 0}}},
};
static uint8_t jet_lut[256][3];
static pthread_once_t jet_once = PTHREAD_ONCE_INIT;

// matplotlib.colors._create_lookup_table(256, data) then (lut * 255).astype(uint8),
// in the same float64 operations so that every truncation lands the same way.
static void jet_build(void) {
    const int N = 256;
    const double step = 1.0 / (N - 1); // np.linspace(0, 1, N): i·step, last exactly 1
    for (int ch = 0; ch < 3; ch++) {
        const segments *s = &JET[ch];
        for (int i = 0; i < N; i++) {
            double v;
            if (i == 0) {
                v = s->p[0][2]; // y1 of the first point
            } else if (i == N - 1) {
                v = s->p[s->n - 1][1]; // y0 of the last point
            } else {
                double xind = (N - 1) * (i * step);
                int k = 0; // searchsorted(x, xind), side left: first x[k] >= xind
                while (k < s->n && (N - 1) * s->p[k][0] < xind)
                    k++;
                double xa = (N - 1) * s->p[k - 1][0], xb = (N - 1) * s->p[k][0];
                double distance = (xind - xa) / (xb - xa);
                v = distance * (s->p[k][1] - s->p[k - 1][2]) + s->p[k - 1][2];
            }
            if (v < 0)
                v = 0;
            if (v > 1)
                v = 1;
            jet_lut[i][ch] = (uint8_t)(v * 255);
        }
    }
}

void wsml_cam_jet(float v, uint8_t rgb[3]) {
    pthread_once(&jet_once, jet_build);
    // matplotlib: xa = v·N (in v's float32; exact, N is a power of two), then int()
    float x = v * 256.0f;
    int i = x >= 256.0f ? 255 : x < 0 || !(x == x) ? 0 : (int)x;
    memcpy(rgb, jet_lut[i], 3);
}

// image: (H, W, 3) u8, cam: (H, W) -> out: (H, W, 3) u8
void wsml_cam_overlay(const uint8_t *image, const float *cam, int H, int W, uint8_t *out) {
    for (size_t p = 0; p < (size_t)H * W; p++) {
        uint8_t heat[3];
        wsml_cam_jet(cam[p], heat);
        for (int c = 0; c < 3; c++)
            out[3 * p + c] = (uint8_t)((heat[c] + image[3 * p + c] + 1) >> 1);
    }
}

// ---- models ---------------------------------------------------------------------------

static int read_model(const char *model_path, int num_classes, wsml_safetensors *st,
                      wsml_net_config *cfg, wsml_err *err) {
    int rc = wsml_st_read(model_path, st, err);
    if (rc)
        return rc;
    if ((rc = wsml_checkpoint_config(st, model_path, NULL, 0, cfg, err)) == 0 &&
        cfg->num_classes != num_classes)
        rc = wsml_errf(err, WSML_EFORMAT, "%s has %d classes but the store has %d", model_path,
                       cfg->num_classes, num_classes);
    if (rc)
        wsml_st_free(st);
    return rc;
}

int wsml_cam_check_model(const char *model_path, int num_classes, wsml_err *err) {
    wsml_safetensors st = {0};
    wsml_net_config cfg;
    int rc = read_model(model_path, num_classes, &st, &cfg, err);
    if (rc == 0)
        wsml_st_free(&st);
    return rc;
}

int wsml_cam_run_model(const char *model_path, int num_classes, wsml_backend *be,
                       const float *images, int n, int H, int W, int batch, const int *pairs,
                       int num_pairs, float **cams_out, int *h_out, int *w_out, wsml_err *err) {
    *cams_out = NULL;
    wsml_safetensors st = {0};
    wsml_net_config cfg;
    wsml_net *net = NULL;
    float *batch_cams = NULL, *cams = NULL;
    int rc = read_model(model_path, num_classes, &st, &cfg, err);
    if (rc)
        return rc;
    if (batch < 1)
        batch = 1;
    if (batch > n)
        batch = n;
    cfg.height = H;
    cfg.width = W;
    cfg.max_batch = batch;
    rc = wsml_checkpoint_net(&st, model_path, &cfg, be, &net, err);
    wsml_st_free(&st); // the weights now live in the network
    if (rc)
        return rc;
    int h, w, F;
    wsml_net_feature_shape(net, &h, &w, &F);
    const size_t hw = (size_t)h * w, C = (size_t)num_classes;
    batch_cams = malloc(sizeof(float) * batch * C * hw);
    cams = malloc(sizeof(float) * ((size_t)num_pairs * hw + 1));
    if (!batch_cams || !cams) {
        rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory for the CAMs", model_path);
        goto done;
    }
    const size_t image_floats = (size_t)H * W * 3;
    for (int first = 0; first < n; first += batch) {
        int count = n - first < batch ? n - first : batch;
        if ((rc =
                 wsml_net_forward(net, images + first * image_floats, count, WSML_NET_EVAL, err)) ||
            (rc = wsml_net_cam(net, batch_cams, err))) {
            wsml_err_prefix(err, "%s", model_path);
            goto done;
        }
        // batch_cams: (count, C, h, w); keep the pairs whose image is in this batch
        for (int p = 0; p < num_pairs; p++) {
            int image = pairs[2 * p], cls = pairs[2 * p + 1];
            if (image >= first && image < first + count)
                memcpy(cams + p * hw, batch_cams + ((size_t)(image - first) * C + cls) * hw,
                       sizeof(float) * hw);
        }
    }
    *cams_out = cams;
    *h_out = h;
    *w_out = w;
    cams = NULL;
done:
    free(batch_cams);
    free(cams);
    wsml_net_free(net);
    return rc;
}
