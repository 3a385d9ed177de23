// The figure grid of wsml-cam: header strip with column titles, tiles, class names
// (see cam/cam.h). Text is rendered by libvips (common/image.h); the rest is copying.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cam/cam.h"

int wsml_cam_font_px(int tile_w) {
    int px = tile_w / 14;
    return px < 10 ? 10 : px > 28 ? 28 : px;
}

int wsml_cam_header_height(int tile_w) {
    return 2 * wsml_cam_font_px(tile_w);
}

typedef struct {
    int x0, y0, x1, y1; // [x0, x1) x [y0, y1)
} rect;

// Blends a coverage mask (0..255) placed with its top-left at (x, y) into img in colour
// ink, only inside clip.
// img: (*, img_w, 3) u8, mask: (mh, mw, 1) u8
static void draw_mask(uint8_t *img, int img_w, const wsml_image *mask, int x, int y, rect clip,
                      const uint8_t ink[3]) {
    for (int my = 0; my < mask->height; my++) {
        int py = y + my;
        if (py < clip.y0 || py >= clip.y1)
            continue;
        for (int mx = 0; mx < mask->width; mx++) {
            int px = x + mx;
            if (px < clip.x0 || px >= clip.x1)
                continue;
            int a = mask->pixels[(size_t)my * mask->width + mx];
            uint8_t *p = img + ((size_t)py * img_w + px) * 3;
            for (int c = 0; c < 3; c++)
                p[c] = (uint8_t)((p[c] * (255 - a) + ink[c] * a + 127) / 255);
        }
    }
}

static void fill(uint8_t *img, int img_w, rect r, uint8_t value) {
    for (int y = r.y0; y < r.y1; y++)
        memset(img + ((size_t)y * img_w + r.x0) * 3, value, (size_t)(r.x1 - r.x0) * 3);
}

// Renders text, or returns 0 (and records the first failure) once text has failed.
static int render(const char *text, int font_px, int *text_ok, wsml_err *err, wsml_image *mask) {
    memset(mask, 0, sizeof(*mask));
    if (!*text_ok || !text || !text[0])
        return 0;
    char font[64];
    snprintf(font, sizeof(font), "DejaVu Sans %d", font_px);
    int rc = wsml_image_text(text, font, mask, err);
    if (rc == WSML_ENOMEM)
        return rc;
    if (rc) {
        *text_ok = 0;
        return 0;
    }
    return 1;
}

#define MAX_LABEL_LINES 4

int wsml_cam_fit_text(const char *text, size_t len, int font_px, int max_w, int cut_middle,
                      char *shown, size_t cap, int *text_ok, wsml_err *err, wsml_image *mask) {
    static const char ELLIPSIS[] = "\xE2\x80\xA6";
    if (len > cap - sizeof ELLIPSIS)
        len = cap - sizeof ELLIPSIS;
    memcpy(shown, text, len);
    shown[len] = 0;
    for (size_t keep = len;;) {
        int rc = render(shown, font_px, text_ok, err, mask);
        if (rc <= 0 || mask->width <= max_w || keep <= 1)
            return rc;
        wsml_image_free(mask);
        keep--; // one character less, then "…" (never in the middle of a UTF-8 sequence)
        size_t head = cut_middle ? (keep + 1) / 2 : keep, tail = keep - head;
        while (head > 0 && ((unsigned char)text[head] & 0xC0) == 0x80)
            head--;
        while (tail > 0 && ((unsigned char)text[len - tail] & 0xC0) == 0x80)
            tail--;
        keep = head + tail;
        memcpy(shown + head, ELLIPSIS, sizeof ELLIPSIS - 1);
        memmove(shown + head + sizeof ELLIPSIS - 1, text + len - tail, tail);
        shown[head + sizeof ELLIPSIS - 1 + tail] = 0;
    }
}

void wsml_cam_image_label(const char *id, char *out, size_t cap) {
    const char *base = strrchr(id, '/');
    base = base ? base + 1 : id;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(out, cap, "%.*s", (int)len, base);
}

int wsml_cam_figure(const uint8_t *tiles, int rows, int cols, int tile_h, int tile_w,
                    const char *const *titles, const char *const *row_labels, wsml_image *out,
                    int *text_ok, wsml_err *err) {
    memset(out, 0, sizeof(*out));
    *text_ok = 1;
    const int font_px = wsml_cam_font_px(tile_w), header = wsml_cam_header_height(tile_w);
    const int pad = font_px / 4 + 1;
    const int fig_w = cols * tile_w, fig_h = header + rows * tile_h;
    uint8_t *img = malloc((size_t)fig_w * fig_h * 3);
    if (!img)
        return wsml_errf(err, WSML_ENOMEM, "figure: out of memory for %dx%d pixels", fig_w, fig_h);
    const uint8_t black[3] = {0, 0, 0}, white[3] = {255, 255, 255};

    // header: white, titles centred (left-aligned and cut when wider than the column)
    fill(img, fig_w, (rect){0, 0, fig_w, header}, 255);
    for (int c = 0; c < cols; c++) {
        wsml_image mask;
        int rc = render(titles ? titles[c] : NULL, font_px, text_ok, err, &mask);
        if (rc < 0) {
            free(img);
            return rc;
        }
        if (rc == 0)
            continue;
        rect cell = {c * tile_w, 0, (c + 1) * tile_w, header};
        int x = cell.x0 + (mask.width + 2 * pad <= tile_w ? (tile_w - mask.width) / 2 : pad);
        int y = (header - mask.height) / 2;
        draw_mask(img, fig_w, &mask, x, y < 0 ? 0 : y, cell, black);
        wsml_image_free(&mask);
    }

    // tiles: (rows, cols, tile_h, tile_w, 3) -> figure rows below the header
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            for (int y = 0; y < tile_h; y++)
                memcpy(img + ((size_t)(header + r * tile_h + y) * fig_w + (size_t)c * tile_w) * 3,
                       tiles + ((((size_t)r * cols + c) * tile_h + y) * tile_w) * 3,
                       (size_t)tile_w * 3);

    // row labels (one line each, e.g. image id and class): white on a black box at the
    // top-left of each row's first tile; the image line is cut in its middle, the others at the end
    for (int r = 0; r < rows && row_labels; r++) {
        if (!row_labels[r])
            continue;
        int y0 = header + r * tile_h;
        wsml_image masks[MAX_LABEL_LINES];
        int num_lines = 0, box_w = 0, rc = 0;
        const char *first = row_labels[r];
        for (const char *line = first; *line && num_lines < MAX_LABEL_LINES;) {
            size_t len = strcspn(line, "\n");
            char shown[512];
            rc = wsml_cam_fit_text(line, len, font_px, tile_w - 2 * pad, line == first, shown,
                                   sizeof shown, text_ok, err, &masks[num_lines]);
            if (rc < 0)
                break;
            if (rc > 0 && masks[num_lines].width > box_w)
                box_w = masks[num_lines].width;
            num_lines += rc > 0;
            line += len + (line[len] == '\n');
        }
        int line_h = font_px + pad, y = y0 + pad;
        if (num_lines && rc >= 0) {
            rect box = {0, y0, box_w + 2 * pad, y0 + num_lines * line_h + pad};
            box.x1 = box.x1 > tile_w ? tile_w : box.x1;
            box.y1 = box.y1 > y0 + tile_h ? y0 + tile_h : box.y1;
            fill(img, fig_w, box, 0);
            for (int k = 0; k < num_lines; k++, y += line_h)
                draw_mask(img, fig_w, &masks[k], pad, y + (font_px - masks[k].height) / 2, box,
                          white);
        }
        for (int k = 0; k < num_lines; k++)
            wsml_image_free(&masks[k]);
        if (rc < 0) {
            free(img);
            return rc;
        }
    }
    out->pixels = img;
    out->height = fig_h;
    out->width = fig_w;
    out->channels = 3;
    if (*text_ok)
        wsml_err_clear(err);
    return 0;
}
