/* log: leveled, tagged logging to stderr (or a file).  One line per message:
 *   2026-11-23T03:50:01.123Z info  route: installed 3 routes
 * Library code logs through here and never exits. */
#pragma once
#include <stdarg.h>
#include <stdio.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level lvl);
void log_set_file(FILE *f);
void log_set_prefix(const char *prefix); /* e.g. node name, shown after the level */
enum log_level log_level_parse(const char *s, enum log_level dflt);
void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level lvl, const char *subsys, const char *fmt, va_list ap);

#define log_error(sub, ...) log_msg(LOG_ERROR, sub, __VA_ARGS__)
#define log_warn(sub, ...) log_msg(LOG_WARN, sub, __VA_ARGS__)
#define log_info(sub, ...) log_msg(LOG_INFO, sub, __VA_ARGS__)
#define log_debug(sub, ...) log_msg(LOG_DEBUG, sub, __VA_ARGS__)
