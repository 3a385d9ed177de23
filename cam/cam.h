// libwsml-cam: class activation maps (docs/methods.md §5) and the figure of the supplement's
// Figure 1 (`wsml-cam`): rows = (image, ground-truth class), columns = the input image,
// then one CAM overlay per model.
//
// A CAM, for image x and class c, as the reference's get_cam computes it:
//   cam = Σ_k fc.weight[c, k] · F_k          over the last feature map F (h, w), h = ceil(H/32)
//         (fc applied per position = a 1x1 convolution; the same tensor for the BoostLU
//          head; NO bias: a constant shift would move the ReLU cut-off, and the
//          reference leaves it out too)
//   cam = F.interpolate(cam, (H, W), mode="bilinear", align_corners=False)
//   cam = relu(cam) / max(relu(cam))          (an all-zero map stays zero, never NaN)
// and is drawn as matplotlib's "jet" colour map at 50% over the image.
//
// Everything here is deterministic: the same checkpoint, store and options give the same
// bytes (on the same backend and thread count).
#ifndef WSML_CAM_H
#define WSML_CAM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/image.h"
#include "train/backend.h"

// ---- maps ------------------------------------------------------------------------------

// Bilinear resize with PyTorch's F.interpolate(mode="bilinear", align_corners=False) rule:
// source coordinate s = (d + 0.5)·in/out − 0.5, clamped at 0, the right/bottom neighbour
// clamped at the edge.
// Returns 0, or WSML_ENOMEM (out untouched).
// in: (h, w) -> out: (H, W), both row-major float
int wsml_cam_upsample(const float *in, int h, int w, float *out, int H, int W);

// ReLU, then division by the maximum, in place over n values; all <= 0 -> all 0.
// map: (n)
void wsml_cam_normalise(float *map, size_t n);

// matplotlib's "jet" (matplotlib.cm.jet(v, bytes=True)[:3], 256 entries): entry
// min(255, floor(256·v)) for v in [0, 1] (v < 0 -> entry 0).
void wsml_cam_jet(float v, uint8_t rgb[3]);

// The overlay: out = (jet(cam) + image + 1) / 2 per channel, in integers (50% alpha,
// rounded half up).
// image: (H, W, 3) uint8, cam: (H, W) in [0, 1] -> out: (H, W, 3) uint8
void wsml_cam_overlay(const uint8_t *image, const float *cam, int H, int W, uint8_t *out);

// ---- models ---------------------------------------------------------------------------

// Runs the checkpoint at model_path (a wsml-train best.safetensors or any torchvision
// ResNet-18/34/50/101 in safetensors; its shape is read as train/predict.h says) in eval
// mode on n normalised images and returns, for each requested (image, class) pair, the
// CAM before upsampling.
//   images: (n, H, W, 3) float32 NHWC, normalised as the training loader does
//   pairs : (num_pairs, 2) int: image index in 0..n-1, class index in 0..C-1
//   *cams : malloc'd (num_pairs, h, w) float32; *h, *w the feature map's size
// num_classes is the store's class count: a checkpoint with another count is WSML_EFORMAT
// naming both. batch: images per forward (>= 1); the maps can differ in the last bits
// with the batch (and the backend's thread count), wsml-cam uses 1 so that an image's
// maps do not depend on the other images chosen.
int wsml_cam_run_model(const char *model_path, int num_classes, wsml_backend *be,
                       const float *images, int n, int H, int W, int batch, const int *pairs,
                       int num_pairs, float **cams, int *h, int *w, wsml_err *err);

// Checks that the checkpoint at model_path reads as a network with num_classes classes
// (the check of wsml_cam_run_model, without building the network); cheap enough to run
// on every model before the first forward.
int wsml_cam_check_model(const char *model_path, int num_classes, wsml_err *err);

// ---- the figure ---------------------------------------------------------------------------

// Height of the header strip above tiles tile_w pixels wide, and the font size (pixels)
// of the titles and class names: font = clamp(tile_w / 14, 10, 28), header = 2·font.
int wsml_cam_font_px(int tile_w);
int wsml_cam_header_height(int tile_w);

// Renders the first len bytes of text at font_px, cut with "…" until at most max_w pixels
// wide: in its middle when cut_middle (an image id: its start names the set, its end the
// image, e.g. COCO's number), else at its end. shown (cap >= 8) receives the text as drawn.
// Returns 1 with *mask set, 0 when fonts do not render (*text_ok 0, err set), or a
// negative wsml_code.
int wsml_cam_fit_text(const char *text, size_t len, int font_px, int max_w, int cut_middle,
                      char *shown, size_t cap, int *text_ok, wsml_err *err, wsml_image *mask);

// A row label's image line: the store id without its folders and extension
// ("val2014/COCO_val2014_000000000139.jpg" -> "COCO_val2014_000000000139").
void wsml_cam_image_label(const char *id, char *out, size_t cap);

// Lays out the figure: a white header strip with titles[col] centred over each column,
// then rows x cols tiles (no gaps); row_labels[row] (may be NULL) is written in white on
// a black box at the top-left of the row's first tile; its first line (the image) is cut
// in its middle when too wide, the others at their end.
//   tiles: (rows, cols, tile_h, tile_w, 3) uint8
//   out  : (header + rows·tile_h, cols·tile_w, 3), out->pixels malloc'd
// Text goes through wsml_image_text; if the fonts cannot be rendered the layout stays
// the same without text, *text_ok is set to 0 and err holds the first text error (the
// return value stays 0). Returns a wsml_code only for memory failure.
int wsml_cam_figure(const uint8_t *tiles, int rows, int cols, int tile_h, int tile_w,
                    const char *const *titles, const char *const *row_labels, wsml_image *out,
                    int *text_ok, wsml_err *err);

#endif
