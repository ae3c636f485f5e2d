/* report.h: llama-diff's self-contained HTML report (inline CSS and SVG, no scripts,
 * nothing fetched). */
#ifndef LLAMAREF_TOOLS_REPORT_H
#define LLAMAREF_TOOLS_REPORT_H

#include <jansson.h>
#include <stdbool.h>

/* Writes the HTML report for doc, the JSON document that `llama-diff check|compare|
 * backends --json` prints, to path. The file is written beside path under a temporary
 * name, synced, then linked into place: an existing file is never replaced unless
 * overwrite (then it is renamed over), and a partial report is never left at path.
 * Returns 0, or nonzero after printing one line to stderr, "llama-diff: PATH: why". */
int lr_write_html_report(const char *path, const json_t *doc, bool overwrite);

#endif
