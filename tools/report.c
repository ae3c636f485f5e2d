/* report.c: llama-diff's HTML report. One file, inline CSS and SVG drawn here (log-scale
 * charts of every stage's and every layer's error, and of the share of each criterion's
 * budget every stage uses: whole tensor, worst token, worst element), the full stage
 * table and the drill-down into the first failing layer. No scripts, fonts or images
 * are fetched. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "llamaref.h"
#include "report.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZERO_FLOOR 1e-18 /* errors at or below this draw in the "0" lane */

/* ---- the document, flattened ---------------------------------------------------------- */

typedef struct {
    const char *name, *kind;
    long long numel, at_row, at_col, nan, inf;
    bool has_at, pass;
    double rel, max_abs, cosine, tol, used; /* rel = NAN where NaN/Inf were present */
    double pred;                            /* the error model's figure, NAN when none */
    /* the worst token (tok_at -1: none) and the element criterion (el_at_row -1: none) */
    double tok, tok_tol, tok_used, atol, rtol, el_worst;
    long long tok_at, el_over, el_at_row, el_at_col;
    bool has_criteria;
    char fails[48];                         /* "rel_l2, token", the criteria failed */
    int layer;                              /* model.layers.{i}[...]: i, else -1 */
    bool is_layer_out;                      /* exactly model.layers.{i} */
} stage;

static double num(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}
static long long integer(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : json_is_real(v) ? (long long)json_real_value(v) : 0;
}
static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The layer of a stage (-1: none); *exact when it is the layer's own output. */
static int layer_of(const char *name, bool *exact) {
    int64_t l = lr_stage_layer(name);
    *exact = l >= 0 && lr_stage_kind_of(name) == LR_STAGE_LAYER;
    return l >= 0 && l <= INT_MAX ? (int)l : -1;
}

/* The per-token and per-element figures of a stage object, and the criteria it fails. */
static void read_criteria(stage *x, const json_t *o) {
    const json_t *tok = json_object_get(o, "token"), *el = json_object_get(o, "elements");
    x->has_criteria = json_is_object(tok) && json_is_object(el);
    x->tok = num(tok, "rel_l2");
    if (x->tok < 0) x->tok = NAN;
    x->tok_tol = num(tok, "tolerance");
    x->tok_used = num(tok, "budget_used");
    x->tok_at = json_is_integer(json_object_get(tok, "at")) ? integer(tok, "at") : -1;
    x->atol = num(el, "atol");
    x->rtol = num(el, "rtol");
    x->el_over = integer(el, "over");
    x->el_worst = num(el, "worst");
    if (x->el_worst < 0) x->el_worst = INFINITY; /* -1: an error where nothing is allowed */
    const json_t *at = json_object_get(el, "worst_at");
    x->el_at_row = x->el_at_col = -1;
    if (json_is_array(at) && json_array_size(at) == 2) {
        x->el_at_row = (long long)json_integer_value(json_array_get(at, 0));
        x->el_at_col = (long long)json_integer_value(json_array_get(at, 1));
    }
    size_t used = 0;
    const json_t *fails = json_object_get(o, "fails"), *v;
    size_t i;
    json_array_foreach(fails, i, v) {
        if (!json_is_string(v)) continue;
        int m =
            snprintf(x->fails + used, sizeof x->fails - used, "%s%s", used ? ", " : "", json_string_value(v));
        if (m < 0 || (size_t)m >= sizeof x->fails - used) break;
        used += (size_t)m;
    }
}

/* The stage as lr_drill_growth reads it (the drill-down's own measure of growth). */
static lr_stage_result as_result(const stage *x) {
    lr_stage_result r = {.name = x->name,
                         .kind = lr_stage_kind_of(x->name),
                         .tolerance = x->tol,
                         .predicted = isfinite(x->pred) ? x->pred : -1,
                         .pass = x->pass};
    r.m.rel_l2 = x->rel;
    r.m.nan_a = !isfinite(x->rel);
    if (x->has_criteria) {
        r.m.elem_checked = true;
        r.m.token_rel_l2 = x->tok;
        r.m.crit = (lr_criteria){.rel_l2 = x->tol, .token = x->tok_tol, .atol = x->atol, .rtol = x->rtol};
    }
    return r;
}

/* ---- output helpers ------------------------------------------------------------------- */

static void esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A number for people: 3 significant digits, "0" for zero, "NaN/Inf" for non-finite. */
static const char *fmt(char *buf, double v) {
    if (!isfinite(v)) snprintf(buf, 32, "NaN/Inf");
    else if (v == 0) snprintf(buf, 32, "0");
    else snprintf(buf, 32, "%.3g", v);
    return buf;
}

/* A stage name shortened for an axis: model.layers.3.mlp.up_proj -> L3.mlp.up_proj. */
static void short_name(char *buf, size_t cap, const char *name) {
    int64_t l = lr_stage_layer(name);
    char prefix[64]; /* model.layers.{l} */
    if (l >= 0)
        snprintf(buf, cap, "L%lld%s", (long long)l,
                 name + strlen(lr_layer_stage_name(prefix, sizeof prefix, l, LR_LS_LAYER)));
    else if (strncmp(name, "model.", 6) == 0)
        snprintf(buf, cap, "%s", name + 6);
    else
        snprintf(buf, cap, "%s", name);
}

/* ---- log-scale SVG charts ------------------------------------------------------------- */

typedef struct {
    const char *label, *color;
    const double *v;   /* n values; NAN = NaN/Inf lane, <= ZERO_FLOOR = "0" lane */
    bool step, dashed; /* a step line (tolerances) instead of points joined by a line */
    bool flag_fail;    /* failing x drawn as a large red point */
} series;

typedef struct {
    const char *title, *ylabel, *xlabel;
    int n, width;
    char **xlabels;     /* n labels */
    bool rotate;        /* rotated x labels (stage names) */
    const series *s;
    int ns;
    const bool *fail;   /* n flags, or NULL */
    int mark;           /* x index of the first divergence, or -1 */
    const int *band;    /* n group ids (layer) to shade alternately, or NULL */
    const char *const *tips; /* n tooltip names, or NULL */
} chart;

static void chart_svg(FILE *f, const chart *c) {
    if (c->n <= 0) return;
    bool any_nan = false, any_zero = false, any_pos = false;
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < c->ns; k++)
        for (int i = 0; i < c->n; i++) {
            double v = c->s[k].v[i];
            if (isnan(v) || isinf(v)) any_nan = true;
            else if (v <= ZERO_FLOOR) any_zero = true;
            else {
                any_pos = true;
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
        }
    int dlo = any_pos ? (int)floor(log10(lo)) : -18, dhi = any_pos ? (int)ceil(log10(hi)) : -17;
    if (any_pos && log10(lo) - dlo < 0.15) dlo--; /* room below a point on a decade line */
    if (any_pos && dhi - log10(hi) < 0.15) dhi++;
    if (dhi <= dlo) dhi = dlo + 1;
    if (dlo < -18) dlo = -18;
    int decades = dhi - dlo, every = decades > 14 ? 3 : decades > 8 ? 2 : 1;

    const int W = c->width, L = 78, R = 18, legend_h = 22 * ((c->ns + 3 + 3) / 4), T = 34 + legend_h;
    const int lane = 24, PH = 280;
    const int top = T + (any_nan ? lane + 8 : 0), bot = top + PH; /* the log area */
    const int zero_y = bot + lane / 2 + 4, nan_y = top - lane / 2 - 10;
    const int xl_h = c->rotate ? 165 : 34;
    const int H = bot + (any_zero ? lane : 0) + xl_h + (c->xlabel ? 18 : 0);
    const double pw = W - L - R, dx = pw / c->n;
#define XPOS(i) (L + ((i) + 0.5) * dx)
#define YPOS(v) (isnan(v) || isinf(v) ? (double)nan_y : (v) <= ZERO_FLOOR ? (double)zero_y \
                 : bot - (log10(v) - dlo) / decades * PH)

    fprintf(f, "<figure><svg class=\"chart\" role=\"img\" "
               "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fprintf(f, "<title>");
    esc(f, c->title);
    fprintf(f, "</title>\n<text x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">", L);
    esc(f, c->title);
    fprintf(f, "</text>\n");

    /* Layer bands. */
    if (c->band) {
        int start = 0;
        for (int i = 1; i <= c->n; i++) {
            if (i < c->n && c->band[i] == c->band[start]) continue;
            int b = c->band[start];
            if (b >= 0) {
                fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n",
                        L + start * dx, top, (i - start) * dx, PH, b % 2 ? "#eef2f8" : "#f7f9fc");
                fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#667\" font-size=\"11\">layer %d</text>\n",
                        L + (start + i) * dx / 2, top + 13, b);
            }
            start = i;
        }
    }
    /* Decade grid and labels. */
    for (int d = dlo; d <= dhi; d++) {
        double y = bot - (double)(d - dlo) / decades * PH;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", L, W - R, y, y,
                (d - dlo) % every ? "#eee" : "#d4d4d4");
        if ((d - dlo) % every == 0)
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">10<tspan dy=\"-6\" font-size=\"9\">%d</tspan></text>\n",
                    L - 8, y + 4, d);
    }
    if (decades <= 2) /* few decades: label 2x and 5x too */
        for (int d = dlo; d < dhi; d++)
            for (int m = 2; m <= 5; m += 3) {
                double y = bot - (d + log10(m) - dlo) / decades * PH;
                fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>\n", L, W - R, y, y);
                fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#666\" font-size=\"10\">%d&#215;10"
                           "<tspan dy=\"-5\" font-size=\"8\">%d</tspan></text>\n", L - 8, y + 4, m, d);
            }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", L, top, pw, PH);
    if (any_zero) {
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%d\" fill=\"#f3f3f3\"/>\n", L, bot + 6, pw, lane - 4);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-weight=\"bold\">0</text>\n", L - 8, zero_y + 4);
    }
    if (any_nan) {
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%d\" fill=\"#fde8e8\"/>\n", L, top - lane - 8, pw, lane - 4);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" fill=\"#b00\" font-weight=\"bold\">NaN/Inf</text>\n", L - 8, nan_y + 4);
    }
    /* Y axis title. */
    fprintf(f, "<text transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\">", top + PH / 2);
    esc(f, c->ylabel);
    fprintf(f, " (log scale)</text>\n");

    /* First divergence. */
    if (c->mark >= 0 && c->mark < c->n) {
        double x = XPOS(c->mark);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#d00\" stroke-width=\"2\" stroke-dasharray=\"2 3\"/>\n",
                x, x, top - (any_nan ? lane + 8 : 0), bot + (any_zero ? lane : 0));
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" fill=\"#d00\" font-weight=\"bold\"%s>first divergence</text>\n",
                x + 4, top + 28, x > W - 160 ? " text-anchor=\"end\"" : "");
    }

    /* Series. */
    for (int k = 0; k < c->ns; k++) {
        const series *s = &c->s[k];
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s d=\"", s->color, s->step ? "2" : "1.5",
                s->dashed ? " stroke-dasharray=\"6 4\"" : "");
        for (int i = 0; i < c->n; i++) {
            double y = YPOS(s->v[i]);
            if (s->step)
                fprintf(f, "%c%.1f %.1f H%.1f ", i ? 'L' : 'M', L + i * dx, y, L + (i + 1) * dx);
            else
                fprintf(f, "%c%.1f %.1f ", i ? 'L' : 'M', XPOS(i), y);
        }
        fprintf(f, "\"/>\n");
        if (s->step) continue;
        for (int i = 0; i < c->n; i++) {
            char b[32];
            bool red = s->flag_fail && c->fail && c->fail[i];
            double v = s->v[i];
            bool hollow = !(isnan(v) || isinf(v)) && v <= ZERO_FLOOR;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1.5\"><title>",
                    XPOS(i), YPOS(v), red ? "4.5" : "3", hollow ? "#fff" : red ? "#d00" : s->color,
                    red ? "#800" : s->color);
            esc(f, c->tips ? c->tips[i] : c->xlabels[i]);
            fprintf(f, ": ");
            esc(f, s->label);
            fprintf(f, " = %s%s</title></circle>\n", fmt(b, v), red ? " (FAIL)" : "");
        }
    }

    /* X labels. */
    int xstep = 1;
    if (!c->rotate) while (c->n / xstep > 30) xstep++;
    for (int i = 0; i < c->n; i += xstep) {
        double x = XPOS(i), y = bot + (any_zero ? lane : 0) + 14;
        bool red = c->fail && c->fail[i];
        if (c->rotate)
            fprintf(f, "<text transform=\"translate(%.1f %.1f) rotate(-55)\" text-anchor=\"end\" font-size=\"10.5\"%s>",
                    x + 3, y - 4, red ? " fill=\"#b00\"" : "");
        else
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\"%s>", x, y + 2, red ? " fill=\"#b00\"" : "");
        esc(f, c->xlabels[i]);
        fprintf(f, "</text>\n");
    }
    if (c->xlabel) {
        fprintf(f, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, H - 6);
        esc(f, c->xlabel);
        fprintf(f, "</text>\n");
    }

    /* Legend. */
    int lx = L, ly = 30 + 8;
    for (int k = 0; k < c->ns + 3; k++) {
        if (lx > W - 260) {
            lx = L;
            ly += 22;
        }
        const char *text;
        if (k < c->ns) {
            const series *s = &c->s[k];
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>", lx, lx + 24, ly,
                    ly, s->color, s->dashed ? " stroke-dasharray=\"6 4\"" : "");
            if (!s->step) fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"3\" fill=\"%s\"/>", lx + 12, ly, s->color);
            text = s->label;
        } else if (k == c->ns) {
            bool any_fail = false;
            for (int i = 0; c->fail && i < c->n; i++) any_fail |= c->fail[i];
            if (!any_fail) continue;
            fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"4.5\" fill=\"#d00\" stroke=\"#800\"/>", lx + 12, ly);
            text = "failing (over tolerance or NaN/Inf)";
        } else if (k == c->ns + 1) {
            if (!any_zero) continue;
            fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"3\" fill=\"#fff\" stroke=\"#555\" stroke-width=\"1.5\"/>", lx + 12, ly);
            text = "exactly 0 (drawn in the 0 lane)";
        } else {
            if (c->mark < 0) continue;
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#d00\" stroke-width=\"2\" stroke-dasharray=\"2 3\"/>",
                    lx + 12, lx + 12, ly - 8, ly + 8);
            text = "first divergence";
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\">", lx + 30, ly + 4);
        esc(f, text);
        fprintf(f, "</text>\n");
        lx += 40 + 7 * (int)strlen(text);
    }
    fprintf(f, "</svg></figure>\n");
#undef XPOS
#undef YPOS
}

/* ---- the page ------------------------------------------------------------------------- */

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1300px}"
    "h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc;padding-bottom:4px}"
    "table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:left}"
    "td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums;font-family:ui-monospace,Menlo,Consolas,monospace}"
    "table.meta th{background:none;width:170px;color:#555;font-weight:600}"
    "table.stages th,table.drill th{background:#f0f0f0;position:sticky;top:0}"
    "tr.fail td{background:#fde8e8}tr.first td{border-top:2px solid #d00}tr.cause td{background:#f9c9c9;font-weight:600}"
    ".badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:bold}"
    ".agree{background:#1a7f37}.diverge{background:#c62828}.other{background:#777}"
    ".PASS{color:#1a7f37;font-weight:bold}.FAIL{color:#c62828;font-weight:bold}"
    "code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}"
    "figure{margin:12px 0}svg.chart{max-width:100%;height:auto;background:#fff}"
    ".row{display:flex;flex-wrap:wrap;gap:8px}.note{color:#555;font-size:13px}";

static void meta_row(FILE *f, const char *key, const char *val, bool as_code) {
    if (!val) return;
    fprintf(f, "<tr><th>");
    esc(f, key);
    fprintf(f, "</th><td>%s", as_code ? "<code>" : "");
    esc(f, val);
    fprintf(f, "%s</td></tr>\n", as_code ? "</code>" : "");
}

static void write_page(FILE *f, const json_t *doc, stage *st, int n) {
    char b[32], b2[32], b3[32];
    const char *command = str(doc, "command"), *result = str(doc, "result"), *first = str(doc, "first_divergence");
    int first_i = -1;
    for (int i = 0; i < n && first; i++)
        if (strcmp(st[i].name, first) == 0) {
            first_i = i;
            break;
        }
    const json_t *dd = json_object_get(doc, "drill_down");
    const char *cause = json_is_object(dd) ? str(dd, "stage") : NULL;

    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n<title>llama-diff ");
    esc(f, command ? command : "report");
    fprintf(f, ": ");
    esc(f, result ? result : "?");
    fprintf(f, "</title>\n<style>%s</style></head><body>\n", CSS);

    /* Header. */
    fprintf(f, "<h1>llama-diff ");
    esc(f, command ? command : "report");
    fprintf(f, " <span class=\"badge %s\">", result && strcmp(result, "agree") == 0 ? "agree"
                                             : result && strcmp(result, "diverge") == 0 ? "diverge" : "other");
    esc(f, result ? result : "unknown");
    fprintf(f, "</span></h1>\n<table class=\"meta\">\n");
    meta_row(f, "Test", str(doc, "test"), false);
    meta_row(f, "Reference", str(doc, "reference"), false);
    meta_row(f, "Precision", str(doc, "precision"), false);
    meta_row(f, "Model", str(doc, "model"), true);
    meta_row(f, "Fixture", str(doc, "fixture"), true);
    meta_row(f, "Backend", str(doc, "backend"), false);
    if (json_is_integer(json_object_get(doc, "tp"))) {
        snprintf(b, sizeof b, "%lld", integer(doc, "tp"));
        meta_row(f, "Tensor parallel", b, false);
    }
    const json_t *scaled = json_object_get(doc, "budgets_scaled");
    if (json_is_boolean(scaled)) /* compare: whether a model scaled the budgets */
        meta_row(f, "Budgets",
                 json_is_true(scaled) ? "scaled by the error model of the model, as check's are"
                                      : "unscaled: no --model, the tolerance table's rows as they are",
                 false);
    if (json_is_boolean(json_object_get(doc, "isolate")))
        meta_row(f, "Isolate", json_is_true(json_object_get(doc, "isolate")) ? "yes: each layer fed the reference input" : "no",
                 false);
    fprintf(f, "<tr><th>Stages</th><td>%d: %lld agree, %lld diverge</td></tr>\n", n, integer(doc, "passed"),
            integer(doc, "failed"));
    const json_t *cov = json_object_get(doc, "coverage");
    if (cov) {
        /* compare: coverage is part of the verdict */
        const json_t *miss = json_object_get(cov, "missing");
        const char *pattern = str(cov, "stages");
        fprintf(f, "<tr><th>Coverage</th><td>%lld of %lld golden stages compared", integer(cov, "compared"),
                integer(cov, "golden"));
        if (pattern) {
            fprintf(f, " (narrowed by --stages <code>");
            esc(f, pattern);
            fprintf(f, "</code>)");
        }
        if (json_array_size(miss)) fprintf(f, "; %zu missing from the run under test: it fails", json_array_size(miss));
        const char *names = str(cov, "names");
        if (names && strcmp(names, "hf") != 0) {
            fprintf(f, "; ");
            esc(f, names);
            fprintf(f, " names: %zu golden stages they cannot hold, %zu names skipped",
                    json_array_size(json_object_get(cov, "not_in_names")),
                    json_array_size(json_object_get(cov, "skipped")));
        }
        fprintf(f, "</td></tr>\n");
    }
    if (first) {
        fprintf(f, "<tr><th>First divergence</th><td><code>");
        esc(f, first);
        fprintf(f, "</code>");
        if (first_i >= 0) {
            const stage *x = &st[first_i];
            fprintf(f, " (rel L2 %s, %s of its tolerance %s)", fmt(b, x->rel),
                    x->used >= 0 ? (snprintf(b2, sizeof b2, "%.3gx", x->used), b2) : "NaN/Inf",
                    fmt(b3, x->tol));
            if (x->fails[0]) {
                fprintf(f, "; fails: ");
                esc(f, x->fails);
            }
            if (x->has_criteria && x->tok_at >= 0)
                fprintf(f, "; worst token %lld at rel L2 %s (%s of its budget %s)", x->tok_at, fmt(b, x->tok),
                        isfinite(x->tok_used) && x->tok_used >= 0
                            ? (snprintf(b2, sizeof b2, "%.3gx", x->tok_used), b2)
                            : "NaN/Inf",
                        fmt(b3, x->tok_tol));
            if (x->has_criteria && x->el_at_row >= 0)
                fprintf(
                    f,
                    "; %lld elements outside |a&minus;b| &le; %s&middot;rms(token) + %s&middot;|ref|, the "
                    "worst at [%lld, %lld] (%s of its allowance)",
                    x->el_over, fmt(b, x->atol), fmt(b2, x->rtol), x->el_at_row, x->el_at_col,
                    isfinite(x->el_worst) ? (snprintf(b3, sizeof b3, "%.3gx", x->el_worst), b3)
                                          : "none allowed");
        }
        fprintf(f, "</td></tr>\n");
    } else {
        fprintf(f, "<tr><th>First divergence</th><td>none: every stage is within its tolerance</td></tr>\n");
    }
    if (cause) {
        double g = num(dd, "growth");
        fprintf(f, "<tr><th>Drill-down</th><td>the error grows most at <code>");
        esc(f, cause);
        const char *by = str(dd, "by");
        fprintf(f, "</code> (%s over the stage before%s)</td></tr>\n",
                isfinite(g) ? (snprintf(b, sizeof b, "x%.3g", g), b) : "first NaN or Inf",
                by && strcmp(by, "token") == 0 ? ", the worst token's error" : "");
    }
    const json_t *lg = json_object_get(doc, "logits");
    if (json_is_object(lg)) {
        fprintf(f, "<tr><th>Logits</th><td>%lld tokens; top-1 agreement %.4g%%; top-%lld overlap %.4g%%; "
                   "KL mean %s, max %s (token %lld); max |&Delta; log-prob| %s</td></tr>\n",
                integer(lg, "tokens"), 100 * num(lg, "top1_agreement"), integer(lg, "k"), 100 * num(lg, "topk_overlap"),
                fmt(b, num(lg, "kl_mean")), fmt(b2, num(lg, "kl_max")), integer(lg, "kl_max_token"),
                fmt(b3, num(lg, "max_abs_delta_logprob")));
    }
    fprintf(f, "</table>\n");

    if (n == 0) {
        fprintf(f, "<p>No stages were compared.</p></body></html>\n");
        return;
    }

    /* Per-stage series. */
    double *rel = malloc(sizeof(double) * (size_t)n * 9), *tol = rel + n, *cosd = rel + 2 * n,
           *mabs = rel + 3 * n, *pred = rel + 4 * n, *share_l2 = rel + 5 * n, *share_tok = rel + 6 * n,
           *share_el = rel + 7 * n, *one = rel + 8 * n;
    bool have_criteria = false;
    bool have_pred = false;
    bool *fail = malloc(sizeof(bool) * (size_t)n);
    int *band = malloc(sizeof(int) * (size_t)n);
    char **xl = malloc(sizeof(char *) * (size_t)n);
    const char **tips = malloc(sizeof(char *) * (size_t)n);
    int nl = 0;
    for (int i = 0; i < n; i++)
        if (st[i].layer + 1 > nl) nl = st[i].layer + 1;
    double *lout = calloc((size_t)(nl ? nl : 1) * 7, sizeof(double)), *lmax = lout + nl, *ltol = lout + 2 * nl,
           *lcos_out = lout + 3 * nl, *lcos_max = lout + 4 * nl, *labs_out = lout + 5 * nl, *labs_max = lout + 6 * nl;
    bool *lfail = calloc((size_t)(nl ? nl : 1), sizeof(bool));
    char **lxl = malloc(sizeof(char *) * (size_t)(nl ? nl : 1));
    if (!rel || !fail || !band || !xl || !tips || !lout || !lfail || !lxl) {
        fprintf(f, "<p>out of memory drawing the charts</p>");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        bool bad = !isfinite(st[i].rel);
        rel[i] = st[i].rel;
        tol[i] = st[i].tol;
        cosd[i] = bad || !isfinite(st[i].cosine) ? NAN : fmax(0.0, 1.0 - st[i].cosine);
        mabs[i] = bad ? NAN : st[i].max_abs;
        pred[i] = isfinite(st[i].pred) ? st[i].pred : ZERO_FLOOR;
        share_l2[i] = bad ? NAN : st[i].rel / st[i].tol;
        share_tok[i] = bad ? NAN : st[i].tok / st[i].tok_tol;
        share_el[i] = bad ? NAN : st[i].el_worst;
        one[i] = 1;
        have_criteria |= st[i].has_criteria;
        have_pred |= isfinite(st[i].pred);
        fail[i] = !st[i].pass;
        band[i] = st[i].layer;
        tips[i] = st[i].name;
        xl[i] = malloc(96);
        if (xl[i]) short_name(xl[i], 96, st[i].name);
    }
    for (int l = 0; l < nl; l++) {
        lout[l] = lmax[l] = lcos_out[l] = lcos_max[l] = labs_out[l] = labs_max[l] = 0;
        ltol[l] = NAN;
        lxl[l] = malloc(16);
        if (lxl[l]) snprintf(lxl[l], 16, "%d", l);
    }
    bool have_out = false;
    for (int i = 0; i < n; i++) {
        int l = st[i].layer;
        if (l < 0) continue;
#define UPD(dst, v) dst = (isnan(dst) || isnan(v)) ? NAN : fmax(dst, v)
        if (st[i].is_layer_out) {
            have_out = true;
            lout[l] = rel[i];
            lcos_out[l] = cosd[i];
            labs_out[l] = mabs[i];
            ltol[l] = st[i].tol;
        } else {
            UPD(lmax[l], rel[i]);
            UPD(lcos_max[l], cosd[i]);
            UPD(labs_max[l], mabs[i]);
            if (isnan(ltol[l])) ltol[l] = st[i].tol;
        }
#undef UPD
        if (!st[i].pass) lfail[l] = true;
    }
    for (int l = 0; l < nl; l++)
        if (isnan(ltol[l])) ltol[l] = ZERO_FLOOR;
    for (int i = 0; i < n; i++)
        if (!xl[i]) goto done;
    for (int l = 0; l < nl; l++)
        if (!lxl[l]) goto done;

    fprintf(f, "<h2>Error per stage</h2>\n<p class=\"note\">Every compared stage in forward order. Relative L2 "
               "error = &#8214;test &minus; reference&#8214; / &#8214;reference&#8214;; a stage fails when it exceeds "
               "its tolerance or holds NaN/Inf. Hover a point for its stage and value.</p>\n");
    series s1[] = {
        {"relative L2 error", "#1f5fbf", rel, false, false, true},
        {"tolerance", "#e07b00", tol, true, true, false},
        {"error model (expected for the precision)", "#2a9d2a", pred, false, true, false},
    };
    chart c1 = {"Relative L2 error per stage", "relative L2 error", NULL, n, 1260, xl, true, s1, have_pred ? 3 : 2,
                fail, first_i, band, tips};
    chart_svg(f, &c1);

    if (have_criteria) {
        fprintf(
            f,
            "<p class=\"note\">Each stage is held to three criteria (docs/tolerances.md): the whole tensor's "
            "relative L2 within its tolerance, the worst token's relative L2 within the per-token budget, "
            "and "
            "every element within |a&minus;b| &le; atol&middot;rms(its token) + rtol&middot;|ref|. The chart "
            "shows the share of each that the stage uses; above 1 it fails.</p>\n");
        series s2[] = {
            {"whole tensor: rel L2 / tolerance", "#1f5fbf", share_l2, false, false, true},
            {"worst token: rel L2 / per-token budget", "#c2571a", share_tok, false, false, true},
            {"worst element: |a\xe2\x88\x92"
             "b| / allowance",
             "#6a8f00", share_el, false, false, true},
            {"1 (the budget)", "#e07b00", one, true, true, false},
        };
        chart c2 = {"Share of each criterion's budget per stage",
                    "share of budget",
                    NULL,
                    n,
                    1260,
                    xl,
                    true,
                    s2,
                    4,
                    fail,
                    first_i,
                    band,
                    tips};
        chart_svg(f, &c2);
    }

    series s3a[] = {{"1 \xe2\x88\x92 cosine similarity", "#7b3fbf", cosd, false, false, true}};
    chart c3a = {"Cosine distance (1 \xe2\x88\x92 cosine) per stage", "1 \xe2\x88\x92 cosine", NULL, n, 1260, xl, true,
                 s3a, 1, fail, first_i, band, tips};
    chart_svg(f, &c3a);
    series s3b[] = {{"max |test \xe2\x88\x92 reference|", "#0f8a7a", mabs, false, false, true}};
    chart c3b = {"Max absolute error per stage", "max abs error", NULL, n, 1260, xl, true, s3b, 1, fail, first_i, band,
                 tips};
    chart_svg(f, &c3b);

    if (nl > 0) {
        fprintf(f, "<h2>Error per layer</h2>\n<p class=\"note\">For each decoder layer "
                   "(<code>model.layers.{i}</code>): the error at the layer's output and the largest error among its "
                   "sub-stages (norms, projections, attention, MLP). Red points: the layer has a failing stage.</p>\n");
        series l1[] = {
            {"layer output", "#1f5fbf", lout, false, false, true},
            {"max over sub-stages", "#555555", lmax, false, true, true},
            {"tolerance", "#e07b00", ltol, true, true, false},
        };
        series l2[] = {
            {"layer output", "#7b3fbf", lcos_out, false, false, true},
            {"max over sub-stages", "#555555", lcos_max, false, true, true},
        };
        series l3[] = {
            {"layer output", "#0f8a7a", labs_out, false, false, true},
            {"max over sub-stages", "#555555", labs_max, false, true, true},
        };
        chart cl1 = {"Relative L2 error per layer", "relative L2 error", "layer", nl, 1260, lxl, false,
                     have_out ? l1 : l1 + 1, have_out ? 3 : 2, lfail, -1, NULL, NULL};
        chart cl2 = {"Cosine distance per layer", "1 \xe2\x88\x92 cosine", "layer", nl, 620, lxl, false,
                     have_out ? l2 : l2 + 1, have_out ? 2 : 1, lfail, -1, NULL, NULL};
        chart cl3 = {"Max absolute error per layer", "max abs error", "layer", nl, 620, lxl, false,
                     have_out ? l3 : l3 + 1, have_out ? 2 : 1, lfail, -1, NULL, NULL};
        chart_svg(f, &cl1);
        fprintf(f, "<div class=\"row\">\n");
        chart_svg(f, &cl2);
        chart_svg(f, &cl3);
        fprintf(f, "</div>\n");
    }

    /* Drill-down: the first failing stage's layer, sub-stage by sub-stage, with the growth
     * of the error over the stage before, as the tool's drill-down measures it
     * (lr_drill_growth). */
    fprintf(f, "<h2>Drill-down</h2>\n");
    if (first_i < 0) {
        fprintf(f, "<p>No stage diverges: nothing to drill into.</p>\n");
    } else {
        int layer = st[first_i].layer;
        if (layer >= 0) {
            fprintf(f, "<p>The first failing stage, <code>");
            esc(f, st[first_i].name);
            fprintf(f, "</code>, is in layer %d. The layer's stages, with each one's error and how much it grew over "
                       "the stage before:</p>\n", layer);
        } else
            fprintf(f, "<p>The first failing stage is outside the decoder layers. The stages up to it, with each one's "
                       "error and how much it grew over the stage before:</p>\n");
        fprintf(f,
                "<table class=\"drill\"><tr><th>stage</th><th>kind</th><th>rel L2</th><th>worst token's rel "
                "L2</th>"
                "<th>growth</th><th>max abs</th><th>1 &minus; cosine</th><th>tolerance</th><th></th></tr>\n");
        for (int i = 0; i < n; i++) {
            if (layer >= 0 ? st[i].layer != layer : i > first_i) continue;
            lr_stage_result x = as_result(&st[i]), before;
            if (i > 0) before = as_result(&st[i - 1]);
            bool by_token;
            double g = lr_drill_growth(&x, i > 0 ? &before : NULL, &by_token);
            bool is_cause = cause && strcmp(cause, st[i].name) == 0;
            fprintf(f, "<tr class=\"%s%s\"><td><code>", st[i].pass ? "" : "fail", is_cause ? " cause" : "");
            esc(f, st[i].name);
            fprintf(f, "</code></td><td>");
            esc(f, st[i].kind);
            fprintf(f, "</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">",
                    fmt(b, st[i].rel), st[i].has_criteria ? fmt(b2, st[i].tok) : "-");
            if (isfinite(g))
                fprintf(f, "x%.3g%s", g, by_token ? " (token)" : "");
            else fprintf(f, "NaN/Inf");
            fprintf(f, "</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td>%s%s</td></tr>\n",
                    fmt(b2, mabs[i]), fmt(b3, cosd[i]), fmt(b, st[i].tol), is_cause ? "&larr; grows most here" : "",
                    i == first_i ? (is_cause ? "; first divergence" : "&larr; first divergence") : "");
        }
        fprintf(f, "</table>\n");
    }

    /* The full table. */
    fprintf(f, "<h2>All stages</h2>\n<table "
               "class=\"stages\"><tr><th>#</th><th>stage</th><th>kind</th><th>elements</th>"
               "<th>rel L2</th><th>max abs</th><th>at [row, col]</th><th>cosine</th><th>NaN</th><th>Inf</th>"
               "<th>tolerance</th><th>share used</th><th>worst token (share of its budget)</th>"
               "<th>elements over (worst share, at)</th><th>result</th></tr>\n");
    for (int i = 0; i < n; i++) {
        const stage *x = &st[i];
        fprintf(f, "<tr class=\"%s%s\"><td class=\"n\">%d</td><td><code>", x->pass ? "" : "fail",
                i == first_i ? " first" : "", i);
        esc(f, x->name);
        fprintf(f, "</code></td><td>");
        esc(f, x->kind);
        fprintf(f, "</td><td class=\"n\">%lld</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">", x->numel,
                fmt(b, x->rel), fmt(b2, x->max_abs));
        if (x->has_at) fprintf(f, "[%lld, %lld]", x->at_row, x->at_col);
        fprintf(f, "</td><td class=\"n\">");
        if (isfinite(x->cosine)) fprintf(f, "%.17g", x->cosine);
        else fprintf(f, "NaN");
        fprintf(f, "</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td><td class=\"n\">%s</td><td class=\"n\">",
                x->nan, x->inf, fmt(b, x->tol));
        if (x->used >= 0 && isfinite(x->used)) fprintf(f, "%.3g%%", 100 * x->used);
        else fprintf(f, "NaN/Inf");
        fprintf(f, "</td><td class=\"n\">");
        if (x->has_criteria && x->tok_at >= 0 && isfinite(x->tok_used) && x->tok_used >= 0)
            fprintf(f, "%lld (%.3g%%)", x->tok_at, 100 * x->tok_used);
        else if (x->has_criteria && x->tok_at >= 0)
            fprintf(f, "%lld (NaN/Inf)", x->tok_at);
        fprintf(f, "</td><td class=\"n\">");
        if (x->has_criteria && x->el_at_row >= 0) {
            fprintf(f, "%lld (", x->el_over);
            if (isfinite(x->el_worst))
                fprintf(f, "%.3g%%", 100 * x->el_worst);
            else
                fprintf(f, "none allowed");
            fprintf(f, ", [%lld, %lld])", x->el_at_row, x->el_at_col);
        }
        fprintf(f, "</td><td class=\"%s\">%s%s", x->pass ? "PASS" : "FAIL", x->pass ? "PASS" : "FAIL",
                i == first_i ? " (first divergence)" : "");
        if (x->fails[0]) {
            fprintf(f, " (");
            esc(f, x->fails);
            fprintf(f, ")");
        }
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n<p class=\"note\">Written by llama-diff. Self-contained: no scripts, fonts or images are "
               "loaded.</p>\n</body></html>\n");
done:
    if (xl)
        for (int i = 0; i < n; i++) free(xl[i]);
    if (lxl)
        for (int l = 0; l < nl; l++) free(lxl[l]);
    free(rel);
    free(fail);
    free(band);
    free(xl);
    free(tips);
    free(lout);
    free(lfail);
    free(lxl);
}

/* ---- the file ------------------------------------------------------------------------- */

typedef struct {
    const json_t *doc;
    stage *st;
    int n;
} page;

static int write_page_to(FILE *f, void *user) {
    const page *p = user;
    write_page(f, p->doc, p->st, p->n);
    return ferror(f) ? -1 : 0;
}

int lr_write_html_report(const char *path, const json_t *doc, bool overwrite) {
    const json_t *arr = json_is_object(doc) ? json_object_get(doc, "stages") : NULL;
    if (!json_is_array(arr)) {
        fprintf(stderr, "llama-diff: %s: no stages to report (not a llama-diff JSON document)\n", path);
        return 1;
    }
    int n = (int)json_array_size(arr);
    stage *st = calloc((size_t)(n ? n : 1), sizeof *st);
    if (!st) {
        fprintf(stderr, "llama-diff: %s: out of memory\n", path);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const json_t *o = json_array_get(arr, (size_t)i);
        stage *x = &st[i];
        x->name = str(o, "name") ? str(o, "name") : "?";
        x->kind = str(o, "kind") ? str(o, "kind") : "";
        x->numel = integer(o, "numel");
        x->rel = num(o, "rel_l2");
        x->max_abs = num(o, "max_abs");
        x->cosine = num(o, "cosine");
        x->nan = integer(o, "nan");
        x->inf = integer(o, "inf");
        x->tol = num(o, "tolerance");
        x->used = num(o, "budget_used");
        x->pred = num(o, "predicted");
        const json_t *p = json_object_get(o, "pass");
        x->pass = json_is_true(p);
        if (x->rel < 0 || x->nan || x->inf) x->rel = NAN; /* -1: NaN/Inf present */
        const json_t *at = json_object_get(o, "max_abs_at");
        x->has_at = json_is_array(at) && json_array_size(at) == 2;
        if (x->has_at) {
            x->at_row = (long long)json_integer_value(json_array_get(at, 0));
            x->at_col = (long long)json_integer_value(json_array_get(at, 1));
        }
        x->layer = layer_of(x->name, &x->is_layer_out);
        read_criteria(x, o);
    }

    page pg = {doc, st, n};
    int rc = lr_write_file_atomic(path, overwrite, write_page_to, &pg);
    if (rc != LR_OK)
        fprintf(stderr, "llama-diff: %s%s\n", lr_last_error(),
                rc == LR_E_IO && !overwrite && access(path, F_OK) == 0 ? " (use --force to replace it)" : "");
    free(st);
    return rc != LR_OK;
}
