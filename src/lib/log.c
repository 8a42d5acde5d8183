#include "lib/log.h"

#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level cur_level = LOG_INFO;
static FILE *out;
static char prefix[64];

void log_set_level(enum log_level lvl)
{
	cur_level = lvl;
}

void log_set_file(FILE *f)
{
	out = f;
}

void log_set_prefix(const char *p)
{
	snprintf(prefix, sizeof(prefix), "%s", p ? p : "");
}

enum log_level log_level_parse(const char *s, enum log_level dflt)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	for (unsigned i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i]))
			return (enum log_level)i;
	return dflt;
}

void log_vmsg(enum log_level lvl, const char *subsys, const char *fmt, va_list ap)
{
	static const char *tags[] = {"error", "warn ", "info ", "debug"};
	if (lvl > cur_level)
		return;
	FILE *f = out ? out : stderr;
	struct timeval tv;
	struct tm tm;
	char ts[32];
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	char line[2048];
	int n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s%s%s: ", ts, (long)tv.tv_usec / 1000,
			 tags[lvl], prefix, prefix[0] ? " " : "", subsys);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	fprintf(f, "%s\n", line);
	fflush(f);
}

void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, subsys, fmt, ap);
	va_end(ap);
}
