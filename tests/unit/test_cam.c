// cam/: the CAM upsampling against PyTorch's F.interpolate, the colour map against
// matplotlib's jet, normalisation edge cases and the figure layout.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cam/cam.h"
#include "tests/unit/common_testutil.h"

// Deterministic inputs with both signs: x_i = sin(1.3·i + seed)·2.
static void fill_wave(float *x, size_t n, float seed) {
    for (size_t i = 0; i < n; i++)
        x[i] = 2.0f * sinf(1.3f * (float)i + seed);
}

// Sizes: integer and non-integer ratios, up and down, non-square, 1-pixel sides.
static const int SIZES[][4] = {{2, 2, 64, 64}, {14, 14, 448, 448}, {3, 5, 17, 29}, {7, 4, 13, 22},
                               {5, 5, 3, 3},   {1, 6, 4, 9},       {6, 1, 11, 2},  {4, 4, 4, 4}};
#define NUM_SIZES ((int)(sizeof(SIZES) / sizeof(SIZES[0])))

Test(cam, upsample_matches_torch_interpolate_bilinear) {
    // The oracle reads each case's size and input from argv/stdin-less text: inputs are
    // regenerated in Python with the same formula in float32.
    const char *code =
        "import sys, numpy as np, torch, torch.nn.functional as F\n"
        "sizes = [[2,2,64,64],[14,14,448,448],[3,5,17,29],[7,4,13,22],[5,5,3,3],[1,6,4,9],\n"
        "         [6,1,11,2],[4,4,4,4]]\n"
        "for k, (h, w, H, W) in enumerate(sizes):\n"
        "    i = np.arange(h * w, dtype=np.float32)\n"
        "    x = (np.float32(2) * np.sin(np.float32(1.3) * i + np.float32(k))).astype(np.float32)\n"
        "    t = torch.from_numpy(x.reshape(1, 1, h, w))\n"
        "    y = F.interpolate(t, size=(H, W), mode='bilinear', align_corners=False)\n"
        "    sys.stdout.buffer.write(y.numpy().astype(np.float32).tobytes())\n";
    size_t len = 0;
    char *out = ct_python(code, NULL, &len);
    size_t want_len = 0;
    for (int k = 0; k < NUM_SIZES; k++)
        want_len += (size_t)SIZES[k][2] * SIZES[k][3] * sizeof(float);
    cr_assert_eq(len, want_len, "oracle wrote %zu bytes, expected %zu", len, want_len);
    const float *want = (const float *)out;
    for (int k = 0; k < NUM_SIZES; k++) {
        int h = SIZES[k][0], w = SIZES[k][1], H = SIZES[k][2], W = SIZES[k][3];
        float *x = malloc(sizeof(float) * h * w), *y = malloc(sizeof(float) * H * W);
        // the same float32 formula as the oracle (sin in float32 may differ by an ulp:
        // the tolerance covers it)
        fill_wave(x, (size_t)h * w, (float)k);
        cr_assert_eq(wsml_cam_upsample(x, h, w, y, H, W), 0);
        double max_err = 0;
        for (int i = 0; i < H * W; i++)
            max_err = fmax(max_err, fabs((double)y[i] - want[i]));
        cr_expect(max_err <= 1e-5, "%dx%d -> %dx%d: max |wsml - torch| = %g", h, w, H, W, max_err);
        want += H * W;
        free(x);
        free(y);
    }
    free(out);
}

Test(cam, jet_matches_matplotlib) {
    // every bin's centre and both edges, 0, 1, and values just below bin edges
    enum { N = 256 * 3 + 4 };
    float v[N];
    int n = 0;
    for (int i = 0; i < 256; i++) {
        v[n++] = (i + 0.5f) / 256.0f;
        v[n++] = i / 256.0f;
        v[n++] = nextafterf((i + 1) / 256.0f, 0.0f);
    }
    v[n++] = 0.0f;
    v[n++] = 1.0f;
    v[n++] = 0.99999994f;
    v[n++] = 1e-9f;
    char args[64], path[] = "/tmp/wsml-jet-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, v, sizeof(v)), (ssize_t)sizeof(v));
    close(fd);
    snprintf(args, sizeof(args), "%s", path);
    const char *code = "import sys, numpy as np\n"
                       "from matplotlib import cm\n"
                       "v = np.fromfile(sys.argv[1], dtype=np.float32)\n"
                       "rgba = cm.jet(v, bytes=True)\n"
                       "sys.stdout.buffer.write(np.ascontiguousarray(rgba[:, :3]).tobytes())\n";
    size_t len = 0;
    char *out = ct_python(code, args, &len);
    unlink(path);
    cr_assert_eq(len, (size_t)N * 3);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        uint8_t rgb[3];
        wsml_cam_jet(v[i], rgb);
        const uint8_t *want = (const uint8_t *)out + 3 * i;
        if (memcmp(rgb, want, 3)) {
            if (bad++ < 5)
                cr_log_error("jet(%.9g) = %d,%d,%d, matplotlib %d,%d,%d", v[i], rgb[0], rgb[1],
                             rgb[2], want[0], want[1], want[2]);
        }
    }
    cr_expect_eq(bad, 0, "%d of %d colours differ from matplotlib", bad, N);
    free(out);
}

Test(cam, normalise_relu_max_and_all_zero) {
    float a[5] = {-1.0f, 0.5f, 2.0f, 0.0f, 1.0f};
    wsml_cam_normalise(a, 5);
    float want[5] = {0, 0.25f, 1.0f, 0, 0.5f};
    for (int i = 0; i < 5; i++)
        cr_expect_float_eq(a[i], want[i], 1e-7, "entry %d", i);
    float z[4] = {-3.0f, -0.0f, -1e-30f, -2.0f}; // nothing positive: zeros, never NaN
    wsml_cam_normalise(z, 4);
    for (int i = 0; i < 4; i++)
        cr_expect(z[i] == 0.0f && !signbit(z[i]), "entry %d is %g", i, z[i]);
}

Test(cam, overlay_is_half_jet_half_image_rounded_up) {
    uint8_t image[2 * 3] = {0, 255, 10, 100, 101, 3};
    float cam[2] = {0.0f, 1.0f};
    uint8_t out[6], jet0[3], jet1[3];
    wsml_cam_overlay(image, cam, 1, 2, out);
    wsml_cam_jet(0.0f, jet0);
    wsml_cam_jet(1.0f, jet1);
    for (int c = 0; c < 3; c++) {
        cr_expect_eq(out[c], (jet0[c] + image[c] + 1) / 2);
        cr_expect_eq(out[3 + c], (jet1[c] + image[3 + c] + 1) / 2);
    }
    cr_expect_eq(jet0[0], 0); // jet(0) is dark blue (0, 0, 127), jet(1) dark red (127, 0, 0)
    cr_expect_eq(jet0[2], 127);
    cr_expect_eq(jet1[0], 127);
    cr_expect_eq(jet1[2], 0);
}

Test(cam, figure_layout_tiles_and_header) {
    const int rows = 3, cols = 2, th = 30, tw = 40;
    size_t tile = (size_t)th * tw * 3;
    uint8_t *tiles = malloc(tile * rows * cols);
    for (size_t i = 0; i < tile * rows * cols; i++)
        tiles[i] = (uint8_t)(i * 31 + 7);
    const char *titles[2] = {"image", "Naive AN"};
    const char *labels[3] = {"person", "dog", NULL};
    wsml_image fig;
    wsml_err err = {0};
    int text_ok = -1;
    cr_assert_eq(wsml_cam_figure(tiles, rows, cols, th, tw, titles, labels, &fig, &text_ok, &err),
                 0, "%s", err.msg);
    int header = wsml_cam_header_height(tw);
    cr_expect_eq(header, 2 * wsml_cam_font_px(tw));
    cr_expect_eq(wsml_cam_font_px(40), 10);
    cr_expect_eq(wsml_cam_font_px(224), 16);
    cr_expect_eq(wsml_cam_font_px(1000), 28);
    cr_assert_eq(fig.width, cols * tw);
    cr_assert_eq(fig.height, header + rows * th);
    cr_assert_eq(fig.channels, 3);
    // tiles of column 1 carry no text: copied exactly; so is row 2's first tile (no label)
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            if (c == 0 && labels[r])
                continue;
            for (int y = 0; y < th; y++)
                cr_expect(
                    !memcmp(fig.pixels + ((size_t)(header + r * th + y) * fig.width + c * tw) * 3,
                            tiles + (((size_t)r * cols + c) * th + y) * tw * 3, (size_t)tw * 3),
                    "tile %d,%d row %d", r, c, y);
        }
    // the header is white except for the titles' ink (when fonts render)
    size_t ink = 0;
    for (int i = 0; i < header * fig.width * 3; i++)
        ink += fig.pixels[i] != 255;
    if (text_ok)
        cr_expect(ink > 0, "no title drawn although fonts render");
    else
        cr_expect_eq(ink, 0);
    wsml_image_free(&fig);
    free(tiles);
}

// Row labels: the image line keeps the id's start and end (what tells COCO's images
// apart), cut in its middle to the tile; a class name is cut at its end; folders and
// extension dropped.
Test(cam, row_label_keeps_both_ends_of_an_image_id) {
    char label[512];
    wsml_cam_image_label("val2014/COCO_val2014_000000000139.jpg", label, sizeof label);
    cr_expect_str_eq(label, "COCO_val2014_000000000139");
    wsml_cam_image_label("2007_000027", label, sizeof label);
    cr_expect_str_eq(label, "2007_000027");
    wsml_cam_image_label("a.b/c", label, sizeof label);
    cr_expect_str_eq(label, "c");

    const char *id = "COCO_val2014_000000000139", *cls = "traffic light and more words";
    const int font_px = wsml_cam_font_px(224), max_w = 224 / 2;
    char shown[512];
    wsml_image mask;
    wsml_err err = {0};
    int text_ok = 1;
    int rc = wsml_cam_fit_text(id, strlen(id), font_px, max_w, 1, shown, sizeof shown, &text_ok,
                               &err, &mask);
    cr_assert_geq(rc, 0, "%s", err.msg);
    if (!rc) {
        cr_skip_test("fonts do not render here: %s", err.msg);
        return;
    }
    cr_expect_leq(mask.width, max_w);
    size_t n = strlen(shown);
    const char *cut = strstr(shown, "\xE2\x80\xA6"); // in the middle: both ends kept
    cr_assert(cut, "shown: %s", shown);
    size_t head = (size_t)(cut - shown), tail = n - head - 3;
    cr_expect(head >= 4 && !strncmp(shown, id, head), "shown: %s", shown);
    cr_expect(tail >= 4 && !strcmp(cut + 3, id + strlen(id) - tail), "shown: %s", shown);
    cr_expect(head - tail <= 1 || tail - head <= 1, "shown: %s", shown);
    wsml_image_free(&mask);
    rc = wsml_cam_fit_text(cls, strlen(cls), font_px, max_w, 0, shown, sizeof shown, &text_ok, &err,
                           &mask);
    cr_assert_eq(rc, 1, "%s", err.msg);
    cr_expect_leq(mask.width, max_w);
    n = strlen(shown);
    cr_expect(n > 3 && !strcmp(shown + n - 3, "\xE2\x80\xA6"), "shown: %s", shown); // at its end
    cr_expect(!strncmp(shown, cls, n - 3), "shown: %s", shown);
    wsml_image_free(&mask);
    // a line that fits is drawn as it is
    rc = wsml_cam_fit_text("dog", 3, font_px, max_w, 1, shown, sizeof shown, &text_ok, &err, &mask);
    cr_assert_eq(rc, 1);
    cr_expect_str_eq(shown, "dog");
    wsml_image_free(&mask);
}
