/* The Exim scan hot loop in C: which lines of a chunk matter, and the fields of usual ones.
 *
 * scan(chunk, rows) does in one pass what logscan/core/pipeline.py (the prefilter of
 * logscan/parsers/exim.py) and logscan/parsers/exim_bulk.py (EximBulk.rows: the _ROW regex,
 * then _row) do in Python: every line of `chunk` (a str of whole lines, each ending in "\n")
 * that holds a trigger or does not start with the boring stamp shape comes back, in order,
 * either as the row EximBulk.rows gives for it or, when that leaves it to parse(), as the
 * line itself. The Python code is the definition: tests/test_exim_bulk.py checks this file
 * against it line for line, and under AddressSanitizer. Each function below names the regex
 * piece it reads; where the regex could backtrack, the comment says why one reading is the
 * only one.
 *
 * runs() (below the row readers) is what the scan uses: the same lines and rows, each row
 * only `(line,)`, and each run of rows counted as EximBulk.batch() counts full rows, reply
 * reasons classified from reasons.tables() (docs/decisions/0018-exim-bulk.md, step 3); the
 * tests hold its counts to batch()'s on the regex rows. scan() stays the row reader they
 * compare with the regex line for line.
 *
 * Only 1-byte-kind strings (all characters below U+0100) are read; for any other chunk
 * scan() and runs() return None and the caller uses the Python path.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef const Py_UCS1 *P;

#define MAX_LINE 65536

static PyObject *EMPTY, *CLASSES[2][4]; /* "", and "o2".."o5", "i2".."i5" */

static int is_digit(Py_UCS1 c) { return c >= '0' && c <= '9'; }
static int is_alnum(Py_UCS1 c) { return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static int is_ip(Py_UCS1 c)
{
    return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f') || c == ':' || c == '.';
}

/* Does [p, e) start with the literal s (length n)? */
static int at(P p, P e, const char *s, Py_ssize_t n) { return p && e - p >= n && memcmp(p, s, (size_t)n) == 0; }
#define AT(p, e, lit) at((p), (e), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* Does [s, p) end with the literal? */
static int ends(P s, P p, const char *lit, Py_ssize_t n) { return p - s >= n && memcmp(p - n, lit, (size_t)n) == 0; }
#define ENDS(s, p, lit) ends((s), (p), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* Is c one of the characters of `set`? (strchr alone would also find a NUL character.) */
static int in(Py_UCS1 c, const char *set) { return c != 0 && strchr(set, c) != NULL; }

/* The end of the run of characters from p that are none of `stop` (a string literal). Per
 * character a table lookup: strchr() per character cost more than the rest of a row. The
 * tables are made once per literal, found by its address (there are a handful). */
static P run_not(P p, P e, const char *stop)
{
    static const char *sets[16];
    static unsigned char tables[16][256];
    int k = 0;
    while (k < 16 && sets[k] && sets[k] != stop)
        k++;
    if (k == 16) { /* more literals than slots: cannot happen with this file's call sites */
        while (p < e && !in(*p, stop))
            p++;
        return p;
    }
    if (!sets[k]) {
        for (const char *c = stop; *c; c++)
            tables[k][(unsigned char)*c] = 1;
        sets[k] = stop;
    }
    const unsigned char *t = tables[k];
    while (p < e && !t[*p])
        p++;
    return p;
}

static P run_digits(P p, P e)
{
    while (p < e && is_digit(*p))
        p++;
    return p;
}

/* The first occurrence of lit (n >= 1 characters) in [p, e), or NULL. memchr() on its first
 * character that is not a space (spaces are everywhere), then a compare: cheaper than memmem()
 * on the short stretches of one line it searches. */
static P find(P p, P e, const char *lit, size_t n)
{
    if (p >= e || (size_t)(e - p) < n)
        return NULL;
    size_t k = 0;
    while (k + 1 < n && lit[k] == ' ')
        k++;
    P last = e - n + k; /* the last place lit[k] can be */
    for (P q = p + k; q <= last;) {
        P hit = memchr(q, lit[k], (size_t)(last - q + 1));
        if (!hit)
            return NULL;
        if (memcmp(hit - k, lit, n) == 0)
            return hit - k;
        q = hit + 1;
    }
    return NULL;
}
#define FIND(p, e, lit) find((p), (e), (lit), sizeof(lit) - 1)

/* ---- the prefilter: exim.py's _BORING and _TRIGGERS ----------------------------------- */

static int d2(P p) { return is_digit(p[0]) && is_digit(p[1]); }

/* A delivery flag `=> ` `-> ` `>> ` `** ` `== ` at p (3 characters available). */
static int flag_at(P p)
{
    return p[2] == ' ' && ((p[0] == '=' && p[1] == '>') || (p[0] == '-' && p[1] == '>') ||
                           (p[0] == '>' && p[1] == '>') || (p[0] == '*' && p[1] == '*') ||
                           (p[0] == '=' && p[1] == '='));
}

static int boring(P s, P e)
{
    Py_ssize_t n = e - s;
    if (n < 20 || !((s[0] == '1' && s[1] == '9') || (s[0] == '2' && s[1] == '0')) || !d2(s + 2) || s[4] != '-' ||
        !d2(s + 5) || s[7] != '-' || !d2(s + 8) || s[10] != ' ' || !d2(s + 11) || s[13] != ':' || !d2(s + 14) ||
        s[16] != ':' || !d2(s + 17))
        return 0;
    int month = (s[5] - '0') * 10 + (s[6] - '0'), day = (s[8] - '0') * 10 + (s[9] - '0');
    int hour = (s[11] - '0') * 10 + (s[12] - '0'), minute = (s[14] - '0') * 10 + (s[15] - '0');
    int second = (s[17] - '0') * 10 + (s[18] - '0');
    if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60)
        return 0;
    if (day > 28 && !(day <= 30 && month != 2) && !(day == 31 && (month == 1 || month == 3 || month == 5 ||
                                                                  month == 7 || month == 8 || month == 10 ||
                                                                  month == 12)))
        return 0;
    P p = s + 19;
    if (p < e && *p == '.') { /* `.mmm`; without it a "." cannot be followed by the space below */
        if (e - p < 4 || !is_digit(p[1]) || !d2(p + 2))
            return 0;
        p += 4;
    }
    /* An optional ` [+-]hhmm` zone, then a space; a zone-shaped word that fails the zone's
     * own test leaves ` +...` after the stamp, which the lookahead refuses too. */
    if (e - p >= 6 && p[0] == ' ' && (p[1] == '+' || p[1] == '-') && d2(p + 2) && d2(p + 4) &&
        (p[2] == '0' || p[2] == '1' || (p[2] == '2' && p[3] <= '3')) && p[4] <= '5')
        p += 6;
    if (p >= e || *p != ' ')
        return 0;
    P b = p + 1;
    if (b >= e || *b == '+' || *b == '-' || *b == '[')
        return 0;
    Py_ssize_t m = e - b;
    if (m > 6 && b[6] == '-') {
        if (m > 19 && b[13] == '-' && b[16] == ' ' && flag_at(b + 17))
            return 0;
        if (m > 26 && b[18] == '-' && b[23] == ' ' && flag_at(b + 24))
            return 0;
    }
    return 1;
}

/* exim.py's _TRIGGERS are "rejected ", " authenticator failed for ", " exim", "]exim" and
 * " dropped". The two exim ones are looked for at once: "exim" after a space or "]". Each is
 * looked for by two of its characters that are seldom both in place (a letter rare in logs,
 * and another; "xi", not "x.m", which "example" has), 32 or 16 places at a time, then the
 * rest compared: memmem() per trigger cost more than the rest of the prefilter. */
typedef struct {
    const char *lit;
    int i, j, exim; /* the two characters; exim: "exim" after " " or "]" (found at that character) */
} Trigger;
static const Trigger TRIGGERS[] = {
    {"rejected ", 2, 7, 0}, {" authenticator failed for ", 5, 15, 0}, {"exim", 1, 2, 1}, {" dropped", 1, 4, 0}};
#define NTRIGGERS 4

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAS_AVX2_PATH 1
static int AVX2; /* set at import: the CPU has AVX2 */
#endif

/* The widest way trigger() may look (tests set less, to hold each way to the others):
 * 2 AVX2 where the CPU has it, 1 SSE2 where built with it, 0 one place at a time. */
static int SIMD = 2;

/* Is the candidate c (its two characters in place) the trigger? */
static int is_trigger(P c, const Trigger *t, size_t n)
{
    return memcmp(c, t->lit, n) == 0 && (!t->exim || c[-1] == ' ' || c[-1] == ']');
}

#ifdef HAS_AVX2_PATH
/* The first candidate from *at that is the trigger, or NULL with *at where fewer than 32
 * places are left. */
__attribute__((target("avx2"))) static P trigger_avx2(P *at, P stop, const Trigger *t, size_t n)
{
    const __m256i a = _mm256_set1_epi8(t->lit[t->i]), b = _mm256_set1_epi8(t->lit[t->j]);
    P q = *at;
    for (; stop - q >= 32; q += 32) { /* reads up to q + j + 31 < q + n - 1 + 32 <= e */
        unsigned mask = (unsigned)_mm256_movemask_epi8(
            _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(q + t->i)), a),
                             _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(q + t->j)), b)));
        while (mask) {
            P c = q + __builtin_ctz(mask);
            if (is_trigger(c, t, n))
                return c;
            mask &= mask - 1;
        }
    }
    *at = q;
    return NULL;
}
#endif

/* Where trigger k next starts in [p, e), or NULL. */
static P trigger(P p, P e, int k)
{
    const Trigger *t = &TRIGGERS[k];
    size_t n = strlen(t->lit);
    if (t->exim)
        p++; /* "exim" one place after where the trigger starts */
    if (p >= e || (size_t)(e - p) < n)
        return NULL;
    P stop = e - n + 1; /* past the last place it can be */
    P q = p;
#ifdef HAS_AVX2_PATH
    if (AVX2 && SIMD >= 2) {
        P c = trigger_avx2(&q, stop, t, n);
        if (c)
            return c - t->exim;
    }
#endif
#ifdef __SSE2__
    const __m128i a = _mm_set1_epi8((char)t->lit[t->i]), b = _mm_set1_epi8((char)t->lit[t->j]);
    for (; SIMD >= 1 && stop - q >= 16; q += 16) {
        unsigned mask = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(q + t->i)), a),
                          _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(q + t->j)), b)));
        while (mask) {
            P c = q + __builtin_ctz(mask);
            if (is_trigger(c, t, n))
                return c - t->exim;
            mask &= mask - 1;
        }
    }
#endif
    for (; q < stop; q++)
        if (q[0] == (Py_UCS1)t->lit[0] && is_trigger(q, t, n))
            return q - t->exim;
    return NULL;
}

/* The prefilter's verdict on the line [s, e) of the chunk [data, end): not boring, or holding
   a trigger. next[k]: where trigger k next starts (n: nowhere), found once per chunk stretch. */
static int wanted_line(P data, P s, P e, P end, Py_ssize_t *next, Py_ssize_t n)
{
    if (!boring(s, e))
        return 1;
    Py_ssize_t so = s - data, eo = e - data;
    for (int k = 0; k < NTRIGGERS; k++) {
        if (next[k] < so) {
            P hit = trigger(s, end, k);
            next[k] = hit ? hit - data : n;
        }
        if (next[k] < eo)
            return 1;
    }
    return 0;
}

/* ---- rows: exim_bulk.py's _ROW ------------------------------------------------------------ */

typedef struct {
    P stamp0, stamp1;
    char kind;           /* S B X D R H A P */
    P code, enh;         /* 3 characters; enhanced code [enh, enh_end) */
    P enh_end;
    P dom0, dom1;        /* the domain key: text after the last "@" */
    P alt0, alt1;        /* `<...>` text after its last "@"; alt0 NULL: none */
    P dt0, dt1;          /* DT= value; dt0 NULL: none */
    P text0, text1;      /* the reply text */
    P ip0, ip1;
    int tmp;             /* `temporarily` */
} Row;

/* _CODE at r: a basic code and an enhanced one. Returns 1 if a code was found. */
static int code_at(P r, P e, Row *w)
{
    if (!(e - r >= 3 && r[0] >= '2' && r[0] <= '5' && is_digit(r[1]) && is_digit(r[2]) &&
          (e - r == 3 || r[3] == ' ' || r[3] == '-')))
        return 0;
    w->code = r;
    P t = r + 3 < e ? r + 4 : r + 3;
    if (t < e && *t == '(')
        t++;
    if (t < e && *t == '#')
        t++;
    if (!(e - t >= 2 && (*t == '2' || *t == '4' || *t == '5') && t[1] == '.'))
        return 1;
    P d1 = run_digits(t + 2, e);
    if (d1 - (t + 2) < 1 || d1 - (t + 2) > 3 || d1 >= e || *d1 != '.')
        return 1;
    P dd = run_digits(d1 + 1, e);
    if (dd - (d1 + 1) < 1 || dd - (d1 + 1) > 3 || (dd < e && *dd == '.'))
        return 1;
    w->enh = t;
    w->enh_end = dd;
    return 1;
}

/* _ADDRESS at p: the address up to its space, then an optional ` <...>`. Returns where it
 * ends, or NULL. An address holding "@" can only be read at its last "@" (an earlier one
 * would leave an "@" in the tail); one without "@" is the other branch; a ` <` must be of
 * the bracket's shape, since `(?! <)` refuses it otherwise. */
static P address(P p, P e, Row *w)
{
    P q = run_not(p, e, " ");
    P last = NULL;
    for (P c = p; c < q; c++)
        if (*c == '@')
            last = c;
    if (last) {
        w->dom0 = last + 1;
        w->dom1 = q;
    } else if (q == p) {
        return NULL;
    } else {
        w->dom0 = w->dom1 = q;
    }
    if (!AT(q, e, " <"))
        return q;
    P c = run_not(q + 2, e, "<> \"@");
    if (c < e && *c == '@') {
        P d = run_not(c + 1, e, "<> \"@");
        w->alt0 = c + 1;
        w->alt1 = d;
        c = d;
    } else {
        w->alt0 = w->alt1 = NULL;
    }
    if (!(c < e && *c == '>') || !(c + 1 == e || c[1] == ' '))
        return NULL;
    if (!w->alt0)
        w->alt0 = w->alt1 = c; /* a bracket without "@": an empty alternative */
    return c + 1;
}

/* _host() after its `H=`: `[name ][(helo) ][ip][:port]`. Each optional part starts with a
 * character the next part cannot start with, so a part that is there must be read whole.
 * Returns where it ends (after any port), or NULL. */
static P host_rest(P p, P e, Row *w)
{
    if (p < e && !in(*p, "\"'[]()=: ")) {
        P q = run_not(p, e, " \"'[]()=:");
        if (q - p > 255 || !(q < e && *q == ' ') || ENDS(p, q, "rejected"))
            return NULL;
        p = q + 1;
    }
    if (p < e && *p == '(') {
        P q = run_not(p + 1, e, " \"'[]()=");
        if (q - (p + 1) > 255 || !AT(q, e, ") "))
            return NULL;
        p = q + 2;
    }
    if (!(p < e && *p == '['))
        return NULL;
    P q = p + 1;
    int dot = 0;
    while (q < e && is_ip(*q)) {
        dot |= *q == '.' || *q == ':';
        q++;
    }
    if (q == p + 1 || q - (p + 1) > 45 || !(q < e && *q == ']') || !dot)
        return NULL;
    w->ip0 = p + 1;
    w->ip1 = q;
    p = q + 1;
    if (p < e && *p == ':') {
        P d = run_digits(p + 1, e);
        if (d > p + 1) /* greedy {1,5}: more digits stay for what follows, which allows them */
            p = d - (p + 1) > 5 ? p + 6 : d;
    }
    return p;
}

/* _DELIVERY after the message id (flag already checked). */
static int delivery(P p, P e, Row *w)
{
    P x = address(p + 3, e, w);
    if (!x)
        return 0;
    /* `(?> (?:[^ \n"]+ )*?H=)`: the first ` H=` reached over non-empty, quote-free words. */
    P h = NULL;
    if (x < e && *x == ' ') {
        P q = x + 1;
        for (;;) {
            if (AT(q, e, "H=")) {
                h = q + 2;
                break;
            }
            P t = run_not(q, e, " \"");
            if (t == q || !(t < e && *t == ' '))
                break;
            q = t + 1;
        }
    }
    P after;
    if (h) {
        Row scratch = *w;
        if (!(after = host_rest(h, e, &scratch)))
            return 0;
    } else {
        if (FIND(x, e, " H="))
            return 0;
        after = x;
    }
    /* `(?:[^\n"]* C="...")?[^\n"]*`: no quote, or the C= field's two and no other. */
    P q1 = memchr(after, '"', (size_t)(e - after));
    w->code = w->enh = NULL;
    if (q1) {
        if (q1 - after < 3 || memcmp(q1 - 3, " C=", 3) != 0)
            return 0;
        P c = q1 + 1;
        if (e - c >= 4 && (c[0] == '2' || c[0] == '3') && is_digit(c[1]) && is_digit(c[2]) &&
            (c[3] == ' ' || c[3] == '-')) {
            /* the quote ends the enhanced code's text: code_at() reads as the slice would */
            P q2 = memchr(c, '"', (size_t)(e - c));
            code_at(c, q2 ? q2 : e, w);
        } else if (e - c >= 4 && c[0] >= '2' && c[0] <= '5' && is_digit(c[1]) && is_digit(c[2]) &&
                   (c[3] == ' ' || c[3] == '-')) {
            return 0; /* a 4xx/5xx reply has a reason to read: parse() */
        }
        P q2 = memchr(c, '"', (size_t)(e - c));
        if (!q2 || !(q2 + 1 == e || q2[1] == ' ') || memchr(q2 + 1, '"', (size_t)(e - q2 - 1)))
            return 0;
    }
    w->kind = 'S';
    return 1;
}

/* _FAILED after the message id (flag already checked). */
static int failed(P s, P p, P e, Row *w)
{
    int bounce = p[0] == '*';
    P x = address(p + 3, e, w);
    if (!x)
        return 0;
    w->code = w->enh = NULL;
    P m = FIND(x, e, "SMTP error from remote mail");
    if (m) {
        P s0 = m + 27;
        if (!AT(s0, e, " server after "))
            return 0;
        s0 += 14;
        if (AT(s0, e, "pipelined "))
            s0 += 10;
        if (AT(s0, e, "RCPT") || AT(s0, e, "MAIL")) {
            P gt = memchr(s0, '>', (size_t)(e - s0));
            if (gt)
                s0 = gt + 1;
        }
        P colon = FIND(s0, e, ": ");
        if (!colon || AT(colon + 2, e, "host "))
            return 0;
        code_at(colon + 2, e, w);
        w->text0 = colon + 2;
        w->text1 = e;
    }
    if (bounce)
        w->kind = (ENDS(s, e, "retry timeout exceeded") || FIND(s, e, "have been failing for a long time")) ? 'X'
                                                                                                          : 'B';
    else if (FIND(s, e, "retry time not reached"))
        return 0;
    else
        w->kind = 'D';
    return 1;
}

/* _NO_QID at b: not a body that _body() would read a message id from. */
static int no_qid(P b, P e)
{
    Py_ssize_t m = e - b;
    if (m > 6 && b[6] == '-') {
        if (m > 16 && b[13] == '-' && b[16] == ' ')
            return 0;
        if (m > 23 && b[18] == '-' && b[23] == ' ')
            return 0;
    }
    return 1;
}

/* Where the run of field characters from p stops: a quote, an apostrophe, ": ", `rejected `,
 * and with `f_stops` also "F=". */
static P fields(P p, P e, int f_stops)
{
    for (; p < e; p++) {
        Py_UCS1 c = *p;
        if (c == '"' || c == '\'' || (c == ':' && p + 1 < e && p[1] == ' ') || (c == 'r' && AT(p, e, "rejected ")) ||
            (f_stops && c == 'F' && p + 1 < e && p[1] == '='))
            return p;
    }
    return p;
}

/* _REJECT at the body b. */
static int reject(P s, P b, P e, Row *w)
{
    if (!no_qid(b, e) || !AT(b, e, "H="))
        return 0;
    P p = host_rest(b + 2, e, w);
    if (!p)
        return 0;
    p = fields(p, e, 1);
    w->dom0 = w->dom1 = p;
    if (AT(p, e, "F=")) {
        P v = p + 2, q = run_not(v, e, " \"':@");
        if (q < e && *q == '@') {
            P d = run_not(q + 1, e, " \"':@");
            w->dom0 = q + 1;
            w->dom1 = d;
            q = d;
        } else {
            w->dom0 = w->dom1 = q;
        }
        if (ENDS(v, q, "temporarily") || ENDS(v, q, "rejected") || !(q < e && *q == ' '))
            return 0;
        p = fields(q + 1, e, 0);
    }
    if (!AT(p, e, "rejected ") || !(p > s && p[-1] == ' '))
        return 0;
    w->tmp = p - s >= 12 && memcmp(p - 12, "temporarily ", 12) == 0;
    p += 9;
    if (AT(p, e, "RCPT ")) {
        w->kind = 'R';
        p += 5;
    } else if (AT(p, e, "EHLO or HELO ")) {
        w->kind = 'H';
        p += 13;
    } else {
        return 0;
    }
    P colon = FIND(p, e, ": ");
    if (!colon)
        return 0;
    w->code = w->enh = NULL;
    code_at(colon + 2, e, w);
    w->text0 = colon + 2;
    w->text1 = e;
    return 1;
}

/* _AUTH at the body b. */
static int auth(P b, P e, Row *w)
{
    if (!no_qid(b, e) || AT(b, e, "H=") || AT(b, e, "U=") || AT(b, e, "F=") || AT(b, e, "re") ||
        AT(b, e, "SMTP ") || AT(b, e, "["))
        return 0;
    P q = run_not(b, e, " ");
    if (q == b || q - b > 255 || !AT(q, e, " authenticator failed for "))
        return 0;
    P p = q + 26;
    if (p < e && !in(*p, " [(")) {
        P t = run_not(p, e, " ");
        if (t - p > 255 || !(t < e && *t == ' '))
            return 0;
        p = t + 1;
    }
    if (p < e && *p == '(') {
        P t = run_not(p + 1, e, " ");
        if (t - (p + 1) < 1 || t - (p + 1) > 256 || t[-1] != ')' || !(t < e && *t == ' '))
            return 0;
        p = t + 1;
    }
    if (!(p < e && *p == '['))
        return 0;
    P t = p + 1;
    int dot = 0;
    while (t < e && is_ip(*t)) {
        dot |= *t == '.' || *t == ':';
        t++;
    }
    if (t == p + 1 || t - (p + 1) > 45 || !(t < e && *t == ']') || !dot)
        return 0;
    w->ip0 = p + 1;
    w->ip1 = t;
    p = t + 1;
    if (p < e && *p == ':' && !AT(p, e, ": ")) {
        P d = run_digits(p + 1, e);
        if (d == p + 1 || d - (p + 1) > 5)
            return 0;
        p = d;
    }
    if (!AT(p, e, ": "))
        return 0;
    w->code = w->enh = NULL;
    if (!code_at(p + 2, e, w))
        return 0;
    w->kind = 'A';
    w->text0 = p + 2;
    w->text1 = e;
    return 1;
}

/* _SYNC at the body b. */
static int sync_error(P b, P e, Row *w)
{
    if (!AT(b, e, "SMTP protocol synchronization error ("))
        return 0;
    P r = FIND(b + 37, e, "): rejected ");
    if (!r || r - (b + 37) > 71 || !AT(r + 12, e, "connection from H="))
        return 0;
    if (!host_rest(r + 12 + 18, e, w))
        return 0;
    w->kind = 'P';
    w->text0 = b;
    w->text1 = e;
    w->code = (P) "554";
    w->enh = NULL;
    return 1;
}

/* The whole of _ROW for the line [s, e). */
static int row(P s, P e, Row *w)
{
    memset(w, 0, sizeof *w);
    if (e - s < 20 || !is_digit(s[0]) || !is_digit(s[1]) || !d2(s + 2) || s[4] != '-' || !d2(s + 5) || s[7] != '-' ||
        !d2(s + 8) || s[10] != ' ' || !d2(s + 11) || s[13] != ':' || !d2(s + 14) || s[16] != ':' || !d2(s + 17))
        return 0;
    P p = s + 19;
    if (e - p >= 4 && p[0] == '.' && is_digit(p[1]) && d2(p + 2))
        p += 4;
    w->stamp0 = s;
    w->stamp1 = p;
    if (!(p < e && *p == ' '))
        return 0;
    P b = p + 1;
    if (b < e && *b == '[') { /* ` [pid] `; a body starting with "[" matches no branch */
        P d = run_digits(b + 1, e);
        if (d == b + 1 || d - (b + 1) > 10 || !AT(d, e, "] "))
            return 0;
        b = d + 2;
    }
    /* A message id, then a flag. */
    Py_ssize_t m = e - b;
    int qid = m >= 17 && is_alnum(b[0]) && is_alnum(b[1]) && is_alnum(b[2]) && is_alnum(b[3]) && is_alnum(b[4]) &&
              is_alnum(b[5]) && b[6] == '-';
    P f = NULL;
    if (qid) {
        P a = b + 7, t = a;
        while (t < e && is_alnum(*t))
            t++;
        if (t - a == 6 && t < e && *t == '-' && e - t >= 4 && is_alnum(t[1]) && is_alnum(t[2]) && t[3] == ' ')
            f = t + 4;
        else if (t - a == 11 && t < e && *t == '-' && e - t >= 6 && is_alnum(t[1]) && is_alnum(t[2]) &&
                 is_alnum(t[3]) && is_alnum(t[4]) && t[5] == ' ')
            f = t + 6;
    }
    if (f) {
        /* `DT=`: the last ` DT=` after the message id, its value cut at 20 characters. */
        P d = NULL;
        for (P h = FIND(f, e, " DT="); h; h = FIND(h + 1, e, " DT="))
            d = h;
        if (d) {
            w->dt0 = d + 4;
            P v = w->dt0, lim = e - v > 20 ? v + 20 : e;
            while (v < lim && *v != ' ')
                v++;
            w->dt1 = v;
        }
        if (e - f >= 3 && f[2] == ' ' && ((f[0] == '=' && f[1] == '>') || (f[0] == '-' && f[1] == '>') ||
                                          (f[0] == '>' && f[1] == '>')))
            return delivery(f, e, w);
        if (e - f >= 3 && f[2] == ' ' && ((f[0] == '*' && f[1] == '*') || (f[0] == '=' && f[1] == '=')))
            return failed(s, f, e, w);
        return 0;
    }
    return reject(s, b, e, w) || (memset(w, 0, sizeof *w), w->stamp0 = s, w->stamp1 = p, auth(b, e, w)) ||
           (memset(w, 0, sizeof *w), w->stamp0 = s, w->stamp1 = p, sync_error(b, e, w));
}

/* ---- making the row -------------------------------------------------------------------- */

/* A str of these characters, the same object as last time when they are the same: stamps
 * and keys repeat from row to row, and a repeated object saves the allocation here and the
 * hashing in the Counter that reads it. */
static PyObject *cached(PyObject **last, P a, Py_ssize_t len)
{
    PyObject *o = *last;
    if (len <= 0)
        return Py_NewRef(EMPTY);
    if (o && PyUnicode_GET_LENGTH(o) == len && memcmp(PyUnicode_1BYTE_DATA(o), a, (size_t)len) == 0)
        return Py_NewRef(o);
    if (!(o = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, a, len)))
        return NULL;
    Py_XSETREF(*last, Py_NewRef(o));
    return o;
}

static PyObject *text(P a, P b)
{
    return a && b > a ? PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, a, b - a) : Py_NewRef(EMPTY);
}

/* exim_bulk._reply(): the first 400 characters, each `<[^<>]{0,320}>` (leftmost first, as
 * re.sub) made a space; the cut text itself when a "<" is left after that one pass. */
#define MAX_TEXT 400
static PyObject *reply(P a, P b)
{
    if (!a || b <= a)
        return Py_NewRef(EMPTY);
    if (b - a > MAX_TEXT)
        b = a + MAX_TEXT;
    if (!memchr(a, '<', (size_t)(b - a)))
        return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, a, b - a);
    Py_UCS1 buf[MAX_TEXT];
    Py_ssize_t n = 0;
    int left = 0;
    for (P p = a; p < b;) {
        if (*p == '<') {
            P q = p + 1, lim = b - q > 320 ? q + 320 : b;
            while (q < lim && *q != '<' && *q != '>')
                q++;
            if (q < b && *q == '>') {
                buf[n++] = ' ';
                p = q + 1;
                continue;
            }
            left = 1;
        }
        buf[n++] = *p++;
    }
    return left ? PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, a, b - a)
                : PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, buf, n);
}

enum { LAST_STAMP, LAST_KEY, LAST_DOMAIN, NLAST };

/* The reply a row counts (exim_bulk._row): for our refusals Exim sends 550 (451 when
 * `temporarily`), and an ACL's code of the same class replaces it; else the code read.
 * Returns whether there is one. */
static int reply_code(const Row *w, char code[3], P *enh, P *enh_end)
{
    *enh = *enh_end = NULL;
    if (w->kind == 'R' || w->kind == 'H') {
        memcpy(code, w->tmp ? "451" : "550", 3);
        if (w->code && w->code[0] == code[0]) {
            memcpy(code, w->code, 3);
            *enh = w->enh;
            *enh_end = w->enh_end;
        }
        return 1;
    }
    if (w->code) {
        memcpy(code, w->code, 3);
        *enh = w->enh;
        *enh_end = w->enh_end;
        return 1;
    }
    return 0;
}

/* A row's key `kind|code|enhanced` into kbuf (an enhanced code is at most 9 characters). */
static Py_ssize_t row_key(const Row *w, int has_code, const char code[3], P enh, P enh_end, Py_UCS1 kbuf[32])
{
    Py_ssize_t kn = 0;
    kbuf[kn++] = (Py_UCS1)w->kind;
    kbuf[kn++] = '|';
    if (has_code) {
        memcpy(kbuf + kn, code, 3);
        kn += 3;
    }
    kbuf[kn++] = '|';
    if (enh) {
        memcpy(kbuf + kn, enh, (size_t)(enh_end - enh));
        kn += enh_end - enh;
    }
    return kn;
}

/* The row's domain key: the text after the address's last "@", then for `=> user <user@dom>`
 * "\n" and the same of the `<...>`. */
static PyObject *domain_key(const Row *w, PyObject **last)
{
    if (!w->alt0)
        return cached(&last[LAST_DOMAIN], w->dom0, w->dom0 ? w->dom1 - w->dom0 : 0);
    Py_ssize_t a = w->dom1 - w->dom0, b = w->alt1 - w->alt0;
    if (b == 0)
        return text(w->dom0, w->dom1);
    PyObject *o = PyUnicode_New(a + 1 + b, 255);
    if (o) {
        Py_UCS1 *d = PyUnicode_1BYTE_DATA(o);
        if (a)
            memcpy(d, w->dom0, (size_t)a);
        d[a] = '\n';
        memcpy(d + a + 1, w->alt0, (size_t)b);
    }
    return o;
}

/* The row batch() reads (exim_bulk.py, _row): stamp, key, domain key, class, DT= value,
 * reply text, client IP, line. */
static PyObject *make_row(Row *w, PyObject *line, PyObject **last)
{
    char code[3] = {0, 0, 0};
    P enh, enh_end;
    int has_code = reply_code(w, code, &enh, &enh_end);
    int inbound = w->kind == 'R' || w->kind == 'H' || w->kind == 'A' || w->kind == 'P';
    Py_UCS1 kbuf[32];
    Py_ssize_t kn = row_key(w, has_code, code, enh, enh_end, kbuf);
    int refusal = has_code && (code[0] == '4' || code[0] == '5');
    PyObject *v[8] = {
        cached(&last[LAST_STAMP], w->stamp0, w->stamp1 - w->stamp0),
        cached(&last[LAST_KEY], kbuf, kn),
        domain_key(w, last),
        Py_NewRef(has_code ? CLASSES[inbound][code[0] - '2'] : EMPTY),
        text(w->dt0, w->dt1),
        (refusal || w->kind == 'R' || w->kind == 'H') ? reply(w->text0, w->text1) : Py_NewRef(EMPTY),
        text(w->ip0, w->ip1),
        Py_NewRef(line),
    };
    PyObject *t = PyTuple_New(8);
    for (int i = 0; i < 8; i++) {
        if (!v[i] || !t) {
            for (int k = 0; k < 8; k++)
                Py_XDECREF(v[k]);
            Py_XDECREF(t);
            return NULL;
        }
    }
    for (int i = 0; i < 8; i++)
        PyTuple_SET_ITEM(t, i, v[i]);
    return t;
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    PyObject *chunk, *out;
    int want_rows;
    (void)self;
    if (!PyArg_ParseTuple(args, "Up", &chunk, &want_rows))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(chunk);
    if (PyUnicode_KIND(chunk) != PyUnicode_1BYTE_KIND || n == 0 || PyUnicode_1BYTE_DATA(chunk)[n - 1] != '\n')
        Py_RETURN_NONE;
    P data = PyUnicode_1BYTE_DATA(chunk), end = data + n;
    if (!(out = PyList_New(0)))
        return NULL;
    /* Where each trigger next occurs at or after the current line (n: nowhere), as offsets. */
    Py_ssize_t next[NTRIGGERS];
    for (int k = 0; k < NTRIGGERS; k++)
        next[k] = -1;
    Py_ssize_t lines = 0;
    Row w;
    PyObject *last[NLAST] = {NULL};
    for (P s = data; s < end;) {
        P e = memchr(s, '\n', (size_t)(end - s));
        Py_ssize_t so = s - data, eo = e - data;
        lines++;
        int wanted = wanted_line(data, s, e, end, next, n);
        if (wanted) {
            PyObject *line = PyUnicode_Substring(chunk, so, eo), *item = line;
            if (line && want_rows && eo - so <= MAX_LINE && !(e > s && e[-1] == '\r') && row(s, e, &w)) {
                item = make_row(&w, line, last);
                Py_DECREF(line);
            }
            if (!item || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(out);
                out = NULL;
                break;
            }
            Py_DECREF(item);
        }
        s = e + 1;
    }
    for (int i = 0; i < NLAST; i++)
        Py_XDECREF(last[i]);
    return out ? Py_BuildValue("(nN)", lines, out) : NULL;
}

/* ---- reasons: reasons.py's classify() of a refusal's reply, in C ----------------------------
 *
 * set_reasons() takes reasons.tables() once (the phrases in priority order, the enhanced and
 * basic codes), so there is still one list. classify() reads `text[:400].lower()` with each
 * `<address>` made a space; of a 1-byte-kind text that is the same as what reply() keeps
 * (one pass of the address rule over the cut text), lower-cased: lower() maps "<" and ">" to
 * themselves and nothing else to them. The phrases are ASCII (set_reasons() refuses others),
 * and no character above U+007F lower-cases to ASCII, so lower-casing A-Z alone matches the
 * same phrases. The first phrase of the list found anywhere decides, as _decide()'s loop. */

#define MAX_PHRASES 1024
static struct {
    Py_UCS1 *text;
    Py_ssize_t len;
    PyObject *reason;
} PHRASES[MAX_PHRASES];
static int NPHRASES = -1; /* -1: set_reasons() not called yet */
/* Phrase indices by first character, each bucket in priority order. */
static int BUCKET[257], BY_FIRST[MAX_PHRASES];
/* Which second characters follow each first one in some phrase (a bit each); SHORT: a
 * phrase of that one character. Most places of a reply start no phrase: one lookup each. */
static unsigned char PAIR[256][32], SHORT[256];
static PyObject *ENHANCED, *BASIC, *OTHER;
static PyObject *BASIC_BY_CODE[1000]; /* BASIC by its 3-digit keys: a code is one */

static void free_reasons(void)
{
    for (int i = 0; i < NPHRASES; i++) {
        PyMem_Free(PHRASES[i].text);
        Py_CLEAR(PHRASES[i].reason);
    }
    NPHRASES = -1;
    Py_CLEAR(ENHANCED);
    Py_CLEAR(BASIC);
    for (int i = 0; i < 1000; i++)
        Py_CLEAR(BASIC_BY_CODE[i]);
}

static PyObject *set_reasons(PyObject *self, PyObject *args)
{
    PyObject *phrases, *enhanced, *basic;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyTuple_Type, &phrases, &PyDict_Type, &enhanced, &PyDict_Type, &basic))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(phrases);
    if (n > MAX_PHRASES)
        return PyErr_Format(PyExc_ValueError, "more than %d phrases", MAX_PHRASES);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(phrases, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyUnicode_IS_ASCII(PyTuple_GET_ITEM(pair, 0)) || PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(pair, 0)) == 0 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(pair, 1)))
            return PyErr_Format(PyExc_ValueError, "phrase %zd is not (non-empty ASCII text, reason)", i);
    }
    free_reasons();
    NPHRASES = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *phrase = PyTuple_GET_ITEM(PyTuple_GET_ITEM(phrases, i), 0);
        Py_ssize_t len = PyUnicode_GET_LENGTH(phrase);
        if (!(PHRASES[i].text = PyMem_Malloc((size_t)len))) {
            free_reasons();
            return PyErr_NoMemory();
        }
        memcpy(PHRASES[i].text, PyUnicode_1BYTE_DATA(phrase), (size_t)len);
        PHRASES[i].len = len;
        PHRASES[i].reason = Py_NewRef(PyTuple_GET_ITEM(PyTuple_GET_ITEM(phrases, i), 1));
        NPHRASES = (int)i + 1;
    }
    memset(BUCKET, 0, sizeof BUCKET);
    for (int i = 0; i < NPHRASES; i++)
        BUCKET[PHRASES[i].text[0] + 1]++;
    for (int c = 0; c < 256; c++)
        BUCKET[c + 1] += BUCKET[c];
    memset(PAIR, 0, sizeof PAIR);
    memset(SHORT, 0, sizeof SHORT);
    for (int i = 0; i < NPHRASES; i++) {
        if (PHRASES[i].len == 1)
            SHORT[PHRASES[i].text[0]] = 1;
        else
            PAIR[PHRASES[i].text[0]][PHRASES[i].text[1] >> 3] |= (unsigned char)(1u << (PHRASES[i].text[1] & 7));
    }
    int fill[256];
    memcpy(fill, BUCKET, sizeof fill);
    for (int i = 0; i < NPHRASES; i++)
        BY_FIRST[fill[PHRASES[i].text[0]]++] = i;
    ENHANCED = Py_NewRef(enhanced);
    BASIC = Py_NewRef(basic);
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(basic, &pos, &k, &v)) {
        if (PyUnicode_Check(k) && PyUnicode_GET_LENGTH(k) == 3 && PyUnicode_KIND(k) == PyUnicode_1BYTE_KIND) {
            P d = PyUnicode_1BYTE_DATA(k);
            if (is_digit(d[0]) && is_digit(d[1]) && is_digit(d[2]))
                Py_XSETREF(BASIC_BY_CODE[(d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0')], Py_NewRef(v));
        }
    }
    Py_RETURN_NONE;
}

/* What classify() reads of a reply [a, b): cut to MAX_TEXT, one pass of the address rule,
 * A-Z lower-cased, into out (MAX_TEXT characters). Returns its length. */
static Py_ssize_t reply_low(P a, P b, Py_UCS1 *out)
{
    if (!a || b <= a)
        return 0;
    if (b - a > MAX_TEXT)
        b = a + MAX_TEXT;
    Py_ssize_t n = 0;
    for (P p = a; p < b;) {
        if (*p == '<') {
            P q = p + 1, lim = b - q > 320 ? q + 320 : b;
            while (q < lim && *q != '<' && *q != '>')
                q++;
            if (q < b && *q == '>') {
                out[n++] = ' ';
                p = q + 1;
                continue;
            }
        }
        Py_UCS1 c = *p++;
        out[n++] = c >= 'A' && c <= 'Z' ? (Py_UCS1)(c + 32) : c;
    }
    return n;
}

/* _decide(code, enhanced, low): a borrowed reference to the reason. */
static PyObject *decide(const char code[3], P enh, P enh_end, const Py_UCS1 *low, Py_ssize_t n)
{
    int best = NPHRASES;
    for (Py_ssize_t p = 0; p < n && best > 0; p++) {
        Py_UCS1 c = low[p];
        if (!SHORT[c] && (p + 1 == n || !(PAIR[c][low[p + 1] >> 3] & (1u << (low[p + 1] & 7)))))
            continue; /* no phrase starts with these two characters */
        for (int k = BUCKET[c]; k < BUCKET[c + 1]; k++) {
            int j = BY_FIRST[k];
            if (j >= best)
                break;
            if (PHRASES[j].len <= n - p && low[p + PHRASES[j].len - 1] == PHRASES[j].text[PHRASES[j].len - 1] &&
                memcmp(low + p, PHRASES[j].text, (size_t)PHRASES[j].len) == 0) {
                best = j;
                break;
            }
        }
    }
    if (best < NPHRASES)
        return PHRASES[best].reason;
    PyObject *key, *got;
    if (enh && enh_end > enh) {
        if (!(key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, enh, enh_end - enh)))
            return NULL;
        got = PyDict_GetItemWithError(ENHANCED, key);
        Py_DECREF(key);
        if (got || PyErr_Occurred())
            return got;
    }
    got = BASIC_BY_CODE[(code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0')];
    return got ? got : OTHER;
}

static PyObject *reason(PyObject *self, PyObject *args)
{
    PyObject *code, *enhanced, *reply_text;
    (void)self;
    if (!PyArg_ParseTuple(args, "UUU", &code, &enhanced, &reply_text))
        return NULL;
    if (NPHRASES < 0)
        return PyErr_Format(PyExc_RuntimeError, "set_reasons() first");
    if (PyUnicode_KIND(code) != PyUnicode_1BYTE_KIND || PyUnicode_GET_LENGTH(code) != 3 ||
        PyUnicode_KIND(enhanced) != PyUnicode_1BYTE_KIND || PyUnicode_KIND(reply_text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    Py_UCS1 low[MAX_TEXT];
    P t = PyUnicode_1BYTE_DATA(reply_text), e = PyUnicode_1BYTE_DATA(enhanced);
    Py_ssize_t n = reply_low(t, t + PyUnicode_GET_LENGTH(reply_text), low);
    PyObject *got = decide((const char *)PyUnicode_1BYTE_DATA(code), e, e + PyUnicode_GET_LENGTH(enhanced), low, n);
    return Py_XNewRef(got);
}

/* ---- runs: what EximBulk.batch() makes of a run of rows, made in the same pass ------------
 *
 * runs() is scan() whose row items are `(line,)`, and each run of consecutive rows (runs of
 * fewer than `min_run` rows made lines again, as _short_runs_as_lines) comes with the
 * grouped counts batch() would make of it from the full rows, so no Python step is left per
 * row. Times: stamp_time()'s arithmetic on the hour's epoch (from the parser, asked once per
 * hour), floor divisions as Python's float `//`. Domains, durations: the parser's functions,
 * memoised in dicts the caller keeps. Reasons: decide() above. */

static PyObject *DIRECTIONS[2], *CLASS_TUPLES[2][4], *KINDS[256];

/* Python's float floor division (CPython float_floor_div), so that buckets are the same. */
static double floordiv(double vx, double wx)
{
    /* A whole positive number by 60 or 1 (every time a log gives, and its minute): integer
     * division gives the same, and glibc's fmod() costs more than the rest of a row's time. */
    if (vx > 0.0 && vx < 4503599627370496.0 /* 2^52 */ && (wx == 60.0 || wx == 1.0)) {
        long long whole = (long long)vx;
        if ((double)whole == vx)
            return (double)(whole / (long long)wx);
    }
    double mod = fmod(vx, wx), div = (vx - mod) / wx, fd;
    if (mod) {
        if ((wx < 0) != (mod < 0))
            div -= 1.0;
    }
    if (div) {
        fd = floor(div);
        if (div - fd > 0.5)
            fd += 1.0;
    } else {
        fd = copysign(0.0, vx / wx);
    }
    return fd;
}

/* A direct-mapped cache of one runs() call's memo answers, by the key's characters: most
 * rows repeat a domain or a DT= text seen a few rows before, and a str made, hashed and
 * looked up for each cost more than the rest of the row's counting. */
#define CACHE 2048 /* slots, a power of two */
typedef struct {
    uint64_t h;
    PyObject *key, *val;
} Slot;

static uint64_t fnv(const Py_UCS1 *b, Py_ssize_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    PyObject *hour_of, *domain_of, *domains, *duration, *durations;
    Slot *domain_cache, *duration_cache;
    int each_reply, per_minute;
    Py_UCS1 hour[13];
    int has_hour, hour_ok;
    double hour_base;
    PyObject *last[NLAST], *last_code, *last_ip;
} Ctx;

#define NREASONS 32
/* One reply of a grouped minute (per_minute): its identity (direction, code, enhanced code),
 * a key with it, its first time and its count so far. */
typedef struct {
    Py_UCS1 id[16];
    Py_ssize_t idn, count;
    PyObject *key, *first;
} Group;

typedef struct {
    PyObject *first;
    Py_ssize_t start, n;
    int ok;
    double last_t;
    long long bucket;
    int has_bucket;
    long cell[3];
    PyObject *keys, *classes, *domains, *minutes, *delays, *refusals, *times, *coded, *weights;
    PyObject *bucket_obj, *sec_obj;
    /* With `weights` (per_minute): the current minute's replies, first seen first (base.
     * per_minute()), put into times/coded/weights when the minute ends; and its last reply. */
    Group *group;
    int ngroups, groups_cap;
    long long gminute, sec_minute; /* sec_minute: the minute of `sec` */
    /* The group of each of the first NKEYS keys in this minute: kgroup[k] when kgen[k] == gen
     * (gen goes up with each minute put), so most replies find theirs without a search. */
    int kgroup[64];
    unsigned kgen[64], gen;
    PyObject *glast_key, *glast_t;
    double sec;
    /* Rows per key: the first NKEYS keys here (by a hash of their characters), any later
     * ones in `keys`; the summary's dict lists these first, so keys keep their first-seen order. */
    PyObject *kobj[64];
    Py_ssize_t kcount[64];
    int nk;
    unsigned char kslot[128]; /* index + 1 into kobj; 0: empty */
    PyObject *dlist[4];       /* delays[S], [B], [X], [D] (borrowed from `delays`) */
    /* Refusals per (direction, code, reason), first seen first; past NREASONS of them the
     * summary has None and batch() counts them from the refusals. */
    struct {
        int inbound;
        PyObject *code, *why;
        Py_ssize_t n;
    } rc[NREASONS];
    int nrc, rc_over;
} Acc;
#define NKEYS 64

static void acc_clear(Acc *a)
{
    Py_CLEAR(a->first);
    Py_CLEAR(a->keys);
    Py_CLEAR(a->classes);
    Py_CLEAR(a->domains);
    Py_CLEAR(a->minutes);
    Py_CLEAR(a->delays);
    Py_CLEAR(a->refusals);
    Py_CLEAR(a->times);
    Py_CLEAR(a->coded);
    Py_CLEAR(a->weights);
    for (int i = 0; i < a->ngroups; i++) {
        Py_CLEAR(a->group[i].key);
        Py_CLEAR(a->group[i].first);
    }
    a->ngroups = 0;
    PyMem_Free(a->group);
    a->group = NULL;
    a->groups_cap = 0;
    Py_CLEAR(a->glast_key);
    Py_CLEAR(a->glast_t);
    Py_CLEAR(a->bucket_obj);
    Py_CLEAR(a->sec_obj);
    for (int i = 0; i < a->nk; i++)
        Py_CLEAR(a->kobj[i]);
    a->nk = 0;
    for (int i = 0; i < a->nrc; i++) {
        Py_CLEAR(a->rc[i].code);
        Py_CLEAR(a->rc[i].why);
    }
    a->nrc = 0;
    a->n = 0;
}

/* The row key kbuf, counted once more: a new reference to an equal str; *slot: its index in
 * kobj, or -1. */
static PyObject *count_key(Acc *a, const Py_UCS1 *kbuf, Py_ssize_t kn, int *slot)
{
    *slot = -1;
    uint64_t h = fnv(kbuf, kn);
    unsigned i = (unsigned)(h & 127);
    for (; a->kslot[i]; i = (i + 1) & 127) {
        int j = a->kslot[i] - 1;
        PyObject *o = a->kobj[j];
        if (PyUnicode_GET_LENGTH(o) == kn && memcmp(PyUnicode_1BYTE_DATA(o), kbuf, (size_t)kn) == 0) {
            a->kcount[j]++;
            *slot = j;
            return Py_NewRef(o);
        }
    }
    PyObject *key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, kbuf, kn);
    if (!key)
        return NULL;
    if (a->nk < NKEYS) {
        *slot = a->nk;
        a->kobj[a->nk] = Py_NewRef(key);
        a->kcount[a->nk] = 1;
        a->kslot[i] = (unsigned char)++a->nk;
        return key;
    }
    PyObject *n = PyDict_GetItemWithError(a->keys, key);
    if (!n && PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    n = PyLong_FromSsize_t(n ? PyLong_AsSsize_t(n) + 1 : 1);
    if (!n || PyDict_SetItem(a->keys, key, n) < 0) {
        Py_XDECREF(n);
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(n);
    return key;
}

static int acc_start(Acc *a, PyObject *first, Py_ssize_t start, int each_reply, int per_minute)
{
    memset(a, 0, sizeof *a);
    a->first = Py_NewRef(first);
    a->start = start;
    a->ok = 1;
    a->gen = 1;
    if (!(a->keys = PyDict_New()) || !(a->classes = PyList_New(0)) || !(a->domains = PyList_New(0)) ||
        !(a->minutes = PyDict_New()) || !(a->delays = PyDict_New()) || !(a->refusals = PyList_New(0)))
        return -1;
    if (each_reply && (!(a->times = PyList_New(0)) || !(a->coded = PyList_New(0))))
        return -1;
    if (each_reply && per_minute && !(a->weights = PyList_New(0)))
        return -1;
    return 0;
}

/* times, coded, weights += t, key, n (one entry of a grouped minute). */
static int put_entry(Acc *a, PyObject *t, PyObject *key, Py_ssize_t n)
{
    PyObject *w = PyLong_FromSsize_t(n);
    int r = w && PyList_Append(a->times, t) == 0 && PyList_Append(a->coded, key) == 0 &&
                    PyList_Append(a->weights, w) == 0
                ? 0
                : -1;
    Py_XDECREF(w);
    return r;
}

/* The grouped minute's entries: each reply's (first time, a key with it, count) in the order
 * replies first came, then (last time, last key, 0); the minute is left empty. */
static int flush_group(Acc *a)
{
    int r = 0;
    for (int i = 0; i < a->ngroups; i++) {
        if (r == 0 && put_entry(a, a->group[i].first, a->group[i].key, a->group[i].count) < 0)
            r = -1;
        Py_CLEAR(a->group[i].key);
        Py_CLEAR(a->group[i].first);
    }
    if (a->ngroups && r == 0 && put_entry(a, a->glast_t, a->glast_key, 0) < 0)
        r = -1;
    a->ngroups = 0;
    a->gen++;
    Py_CLEAR(a->glast_key);
    Py_CLEAR(a->glast_t);
    return r;
}

/* Count a reply (key, its time a->sec_obj) into the grouped minute; a new minute puts the last. */
static int group_add(Acc *a, PyObject *key, int slot, int inbound, const char code[3], P enh, P enh_end)
{
    if (a->ngroups && a->sec_minute != a->gminute && flush_group(a) < 0)
        return -1;
    a->gminute = a->sec_minute;
    if (slot >= 0 && a->kgen[slot] == a->gen) {
        a->group[a->kgroup[slot]].count++;
        Py_XSETREF(a->glast_key, Py_NewRef(key));
        Py_XSETREF(a->glast_t, Py_NewRef(a->sec_obj));
        return 0;
    }
    Py_UCS1 id[16];
    Py_ssize_t idn = 0;
    id[idn++] = (Py_UCS1)inbound;
    memcpy(id + idn, code, 3);
    idn += 3;
    if (enh) { /* at most 9 characters (row_key) */
        memcpy(id + idn, enh, (size_t)(enh_end - enh));
        idn += enh_end - enh;
    }
    int g = 0;
    while (g < a->ngroups && !(a->group[g].idn == idn && memcmp(a->group[g].id, id, (size_t)idn) == 0))
        g++;
    if (g == a->groups_cap) {
        int cap = a->groups_cap ? 2 * a->groups_cap : 32;
        Group *more = PyMem_Realloc(a->group, sizeof(Group) * (size_t)cap);
        if (!more) {
            PyErr_NoMemory();
            return -1;
        }
        a->group = more;
        a->groups_cap = cap;
    }
    if (g == a->ngroups) {
        memcpy(a->group[g].id, id, (size_t)idn);
        a->group[g].idn = idn;
        a->group[g].count = 0;
        a->group[g].key = Py_NewRef(key);
        a->group[g].first = Py_NewRef(a->sec_obj);
        a->ngroups++;
    }
    if (slot >= 0) {
        a->kgroup[slot] = g;
        a->kgen[slot] = a->gen;
    }
    a->group[g].count++;
    Py_XSETREF(a->glast_key, Py_NewRef(key));
    Py_XSETREF(a->glast_t, Py_NewRef(a->sec_obj));
    return 0;
}

/* Add the current bucket's [sent, bounced, expired] to minutes[bucket]. */
static int flush_cell(Acc *a)
{
    if (!a->has_bucket || !(a->cell[0] || a->cell[1] || a->cell[2]))
        return 0;
    PyObject *k = PyLong_FromLongLong(a->bucket), *cell;
    if (!k)
        return -1;
    cell = PyDict_GetItemWithError(a->minutes, k);
    if (!cell) {
        if (PyErr_Occurred() || !(cell = Py_BuildValue("[lll]", a->cell[0], a->cell[1], a->cell[2])) ||
            PyDict_SetItem(a->minutes, k, cell) < 0) {
            Py_XDECREF(cell);
            Py_DECREF(k);
            return -1;
        }
        Py_DECREF(cell);
    } else {
        for (int i = 0; i < 3; i++) {
            PyObject *v = PyLong_FromLong(PyLong_AsLong(PyList_GET_ITEM(cell, i)) + a->cell[i]);
            if (!v || PyList_SetItem(cell, i, v) < 0) {
                Py_DECREF(k);
                return -1;
            }
        }
    }
    Py_DECREF(k);
    a->cell[0] = a->cell[1] = a->cell[2] = 0;
    return 0;
}

/* The epoch of a row's stamp as stamp_time() gives it: 1, or 0 when it gives None; -1: error. */
static int stamp_epoch(Ctx *c, P s, P e, double *t)
{
    int mi = (s[14] - '0') * 10 + (s[15] - '0'), se = (s[17] - '0') * 10 + (s[18] - '0');
    if (mi > 59 || se > 60)
        return 0;
    if (!c->has_hour || memcmp(c->hour, s, 13) != 0) {
        PyObject *key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s, 13), *got;
        if (!key)
            return -1;
        got = PyObject_CallOneArg(c->hour_of, key);
        Py_DECREF(key);
        if (!got)
            return -1;
        c->hour_ok = got != Py_None;
        if (c->hour_ok) {
            c->hour_base = PyFloat_AsDouble(got);
            if (c->hour_base == -1.0 && PyErr_Occurred()) {
                Py_DECREF(got);
                return -1;
            }
        }
        Py_DECREF(got);
        memcpy(c->hour, s, 13);
        c->has_hour = 1;
    }
    if (!c->hour_ok)
        return 0;
    double secs = (double)(mi * 60 + se);
    if (e - s == 23)
        secs = secs + (double)((s[20] - '0') * 100 + (s[21] - '0') * 10 + (s[22] - '0')) / 1000.0;
    *t = c->hour_base + secs;
    return 1;
}

/* memo[key], or fn(key) stored there: a new reference. */
static PyObject *memo(PyObject *dict, PyObject *fn, PyObject *key)
{
    PyObject *got = PyDict_GetItemWithError(dict, key);
    if (got)
        return Py_NewRef(got);
    if (PyErr_Occurred() || !(got = PyObject_CallOneArg(fn, key)))
        return NULL;
    if (PyDict_SetItem(dict, key, got) < 0) {
        Py_DECREF(got);
        return NULL;
    }
    return got;
}

/* memo(dict, fn, str of [b, b + n)) with this call's cache in front (made when first needed). */
static PyObject *cache_memo(Slot **cache, PyObject *dict, PyObject *fn, P b, Py_ssize_t n)
{
    if (!*cache && !(*cache = PyMem_Calloc(CACHE, sizeof(Slot))))
        return PyErr_NoMemory();
    if (n == 0)
        b = (P) "";
    uint64_t h = fnv(b, n);
    Slot *s = &(*cache)[h & (CACHE - 1)];
    if (s->key && s->h == h && PyUnicode_GET_LENGTH(s->key) == n &&
        memcmp(PyUnicode_1BYTE_DATA(s->key), b, (size_t)n) == 0)
        return Py_NewRef(s->val);
    PyObject *key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, b, n), *val;
    if (!key)
        return NULL;
    if (!(val = memo(dict, fn, key))) {
        Py_DECREF(key);
        return NULL;
    }
    Py_XSETREF(s->key, key);
    Py_XSETREF(s->val, Py_NewRef(val));
    s->h = h;
    return val;
}

static void free_cache(Slot **cache)
{
    if (!*cache)
        return;
    for (int i = 0; i < CACHE; i++) {
        Py_XDECREF((*cache)[i].key);
        Py_XDECREF((*cache)[i].val);
    }
    PyMem_Free(*cache);
    *cache = NULL;
}

static int append_new(PyObject *list, PyObject *o)
{
    if (!o)
        return -1;
    int r = PyList_Append(list, o);
    Py_DECREF(o);
    return r;
}

/* Count one row into the run (once a time is bad or goes back, the run is refused whole). */
static int acc_add(Ctx *c, Acc *a, Row *w)
{
    a->n++;
    if (!a->ok)
        return 0;
    double t;
    int got = stamp_epoch(c, w->stamp0, w->stamp1, &t);
    if (got < 0)
        return -1;
    if (!got || (a->n > 1 && t < a->last_t)) {
        a->ok = 0;
        return 0;
    }
    a->last_t = t;
    long long bucket = (long long)floordiv(t, 60.0);
    if (!a->has_bucket || bucket != a->bucket) {
        if (flush_cell(a) < 0)
            return -1;
        a->bucket = bucket;
        a->has_bucket = 1;
        Py_CLEAR(a->bucket_obj);
    }
    char code[3] = {0, 0, 0};
    P enh, enh_end;
    int has_code = reply_code(w, code, &enh, &enh_end);
    int inbound = w->kind == 'R' || w->kind == 'H' || w->kind == 'A' || w->kind == 'P';
    Py_UCS1 kbuf[32];
    int slot;
    PyObject *key = count_key(a, kbuf, row_key(w, has_code, code, enh, enh_end, kbuf), &slot);
    if (!key)
        return -1;
    if (w->kind == 'S' || w->kind == 'B' || w->kind == 'X')
        a->cell[w->kind == 'S' ? 0 : w->kind == 'B' ? 1 : 2]++;
    if (w->dt0) {
        PyObject *v = cache_memo(&c->duration_cache, c->durations, c->duration, w->dt0, w->dt1 - w->dt0);
        if (!v)
            goto fail;
        if (v != Py_None) {
            int d = w->kind == 'S' ? 0 : w->kind == 'B' ? 1 : w->kind == 'X' ? 2 : 3;
            PyObject *list = a->dlist[d];
            if (!list) { /* the kind's first good value: its place in `delays`, as setdefault() */
                if (!(list = PyList_New(0)) || PyDict_SetItem(a->delays, KINDS[(Py_UCS1)w->kind], list) < 0) {
                    Py_XDECREF(list);
                    Py_DECREF(v);
                    goto fail;
                }
                Py_DECREF(list);
                a->dlist[d] = list;
            }
            if (PyList_Append(list, v) < 0) {
                Py_DECREF(v);
                goto fail;
            }
        }
        Py_DECREF(v);
    }
    if (has_code) {
        if (PyList_Append(a->classes, CLASS_TUPLES[inbound][code[0] - '2']) < 0)
            goto fail;
        PyObject *dom;
        Py_ssize_t da = w->dom0 ? w->dom1 - w->dom0 : 0, db = w->alt0 ? w->alt1 - w->alt0 : 0;
        if (da + 1 + db <= 512) {
            Py_UCS1 dbuf[512];
            if (da)
                memcpy(dbuf, w->dom0, (size_t)da);
            if (db) { /* `=> user <user@dom>`: "\n" and the bracket's domain key (see domain_key) */
                dbuf[da] = '\n';
                memcpy(dbuf + da + 1, w->alt0, (size_t)db);
            }
            dom = cache_memo(&c->domain_cache, c->domains, c->domain_of, dbuf, db ? da + 1 + db : da);
        } else {
            PyObject *dk = domain_key(w, c->last);
            dom = dk ? memo(c->domains, c->domain_of, dk) : NULL;
            Py_XDECREF(dk);
        }
        if (!dom)
            goto fail;
        if (PyList_Append(a->domains, dom) < 0) {
            Py_DECREF(dom);
            goto fail;
        }
        if (a->times) {
            double sec = floordiv(t, 1.0);
            if (!a->sec_obj || sec != a->sec) {
                Py_XSETREF(a->sec_obj, PyFloat_FromDouble(sec));
                a->sec = sec;
                a->sec_minute = (long long)floordiv(sec, 60.0);
            }
            int bad = !a->sec_obj || (a->weights ? group_add(a, key, slot, inbound, code, enh, enh_end) < 0
                                                 : PyList_Append(a->times, a->sec_obj) < 0 ||
                                                       PyList_Append(a->coded, key) < 0);
            if (bad) {
                Py_DECREF(dom);
                goto fail;
            }
        }
        if (code[0] == '4' || code[0] == '5') {
            Py_UCS1 low[MAX_TEXT];
            Py_ssize_t ln = reply_low(w->text0, w->text1, low);
            PyObject *why = decide(code, enh, enh_end, low, ln);
            if (!why || (!a->bucket_obj && !(a->bucket_obj = PyLong_FromLongLong(bucket)))) {
                Py_DECREF(dom);
                goto fail;
            }
            PyObject *code_s = cached(&c->last_code, (P)code, 3), *ip = cached(&c->last_ip, w->ip0, w->ip1 - w->ip0);
            PyObject *r = code_s && ip ? PyTuple_Pack(7, a->bucket_obj, DIRECTIONS[inbound], code_s, why,
                                                      inbound ? dom : EMPTY, ip, inbound ? EMPTY : dom)
                                       : NULL;
            if (r && !a->rc_over) {
                int i = 0;
                while (i < a->nrc && !(a->rc[i].inbound == inbound && a->rc[i].why == why &&
                                       memcmp(PyUnicode_1BYTE_DATA(a->rc[i].code), code, 3) == 0))
                    i++;
                if (i < a->nrc) {
                    a->rc[i].n++;
                } else if (a->nrc < NREASONS) {
                    a->rc[i].inbound = inbound;
                    a->rc[i].code = Py_NewRef(code_s);
                    a->rc[i].why = Py_NewRef(why);
                    a->rc[i].n = 1;
                    a->nrc++;
                } else {
                    a->rc_over = 1;
                }
            }
            Py_XDECREF(code_s);
            Py_XDECREF(ip);
            if (append_new(a->refusals, r) < 0) {
                Py_DECREF(dom);
                goto fail;
            }
        }
        Py_DECREF(dom);
    }
    Py_DECREF(key);
    return 0;
fail:
    Py_DECREF(key);
    return -1;
}

/* End the run: its summary onto `runs`, or, under min_run rows, its rows made lines again. */
static int acc_end(Acc *a, PyObject *out, PyObject *runs, Py_ssize_t min_run)
{
    if (!a->first)
        return 0;
    int r = 0;
    if (a->n < min_run) {
        for (Py_ssize_t i = a->start; i < a->start + a->n; i++)
            if (PyList_SetItem(out, i, Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(out, i), 0))) < 0)
                r = -1;
    } else if (flush_cell(a) < 0 || (a->weights && a->ok && flush_group(a) < 0)) {
        r = -1;
    } else {
        PyObject *keys = PyDict_New();
        for (int i = 0; keys && i < a->nk; i++) {
            PyObject *n = PyLong_FromSsize_t(a->kcount[i]);
            if (!n || PyDict_SetItem(keys, a->kobj[i], n) < 0)
                Py_CLEAR(keys);
            Py_XDECREF(n);
        }
        if (!keys || PyDict_Update(keys, a->keys) < 0) {
            Py_XDECREF(keys);
            acc_clear(a);
            return -1;
        }
        Py_SETREF(a->keys, keys);
        PyObject *reasons = a->rc_over ? Py_NewRef(Py_None) : PyDict_New();
        for (int i = 0; reasons && !a->rc_over && i < a->nrc; i++) {
            PyObject *k = PyTuple_Pack(3, DIRECTIONS[a->rc[i].inbound], a->rc[i].code, a->rc[i].why),
                     *n = PyLong_FromSsize_t(a->rc[i].n);
            if (!k || !n || PyDict_SetItem(reasons, k, n) < 0)
                Py_CLEAR(reasons);
            Py_XDECREF(k);
            Py_XDECREF(n);
        }
        PyObject *s = reasons ? Py_BuildValue("(OnOdOOOOOOOONO)", a->first, a->n, a->ok ? Py_True : Py_False,
                                              a->last_t, a->keys, a->classes, a->domains, a->minutes, a->delays,
                                              a->refusals, a->times ? a->times : Py_None,
                                              a->coded ? a->coded : Py_None, reasons,
                                              a->weights ? a->weights : Py_None)
                              : NULL;
        r = append_new(runs, s);
    }
    acc_clear(a);
    return r;
}

static PyObject *runs(PyObject *self, PyObject *args)
{
    PyObject *chunk, *out = NULL, *found = NULL;
    Py_ssize_t min_run;
    Ctx c;
    (void)self;
    memset(&c, 0, sizeof c);
    if (!PyArg_ParseTuple(args, "UnppOOO!OO!", &chunk, &min_run, &c.each_reply, &c.per_minute, &c.hour_of,
                          &c.domain_of, &PyDict_Type, &c.domains, &c.duration, &PyDict_Type, &c.durations))
        return NULL;
    if (NPHRASES < 0)
        return PyErr_Format(PyExc_RuntimeError, "set_reasons() first");
    Py_ssize_t n = PyUnicode_GET_LENGTH(chunk);
    if (PyUnicode_KIND(chunk) != PyUnicode_1BYTE_KIND || n == 0 || PyUnicode_1BYTE_DATA(chunk)[n - 1] != '\n')
        Py_RETURN_NONE;
    P data = PyUnicode_1BYTE_DATA(chunk), end = data + n;
    if (!(out = PyList_New(0)) || !(found = PyList_New(0))) {
        Py_XDECREF(out);
        return NULL;
    }
    Py_ssize_t next[NTRIGGERS];
    for (int k = 0; k < NTRIGGERS; k++)
        next[k] = -1;
    Py_ssize_t lines = 0;
    Row w;
    Acc a;
    memset(&a, 0, sizeof a);
    int failed = 0;
    for (P s = data; s < end && !failed;) {
        P e = memchr(s, '\n', (size_t)(end - s));
        Py_ssize_t so = s - data, eo = e - data;
        lines++;
        int wanted = wanted_line(data, s, e, end, next, n);
        if (wanted) {
            PyObject *line = PyUnicode_Substring(chunk, so, eo), *item = line;
            if (line && eo - so <= MAX_LINE && !(e > s && e[-1] == '\r') && row(s, e, &w)) {
                item = PyTuple_Pack(1, line);
                Py_DECREF(line);
                if (item && !a.first && acc_start(&a, item, PyList_GET_SIZE(out), c.each_reply, c.per_minute) < 0)
                    failed = 1;
                if (item && !failed && acc_add(&c, &a, &w) < 0)
                    failed = 1;
            } else if (item && acc_end(&a, out, found, min_run) < 0) {
                failed = 1;
            }
            if (!item || PyList_Append(out, item) < 0)
                failed = 1;
            Py_XDECREF(item);
        }
        s = e + 1;
    }
    if (!failed && acc_end(&a, out, found, min_run) < 0)
        failed = 1;
    acc_clear(&a);
    free_cache(&c.domain_cache);
    free_cache(&c.duration_cache);
    for (int i = 0; i < NLAST; i++)
        Py_XDECREF(c.last[i]);
    Py_XDECREF(c.last_code);
    Py_XDECREF(c.last_ip);
    if (failed) {
        Py_DECREF(out);
        Py_DECREF(found);
        return NULL;
    }
    return Py_BuildValue("(nNN)", lines, out, found);
}

static PyObject *set_simd(PyObject *self, PyObject *args)
{
    int level, was = SIMD;
    (void)self;
    if (!PyArg_ParseTuple(args, "i", &level))
        return NULL;
    SIMD = level;
    return PyLong_FromLong(was);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, rows) -> (lines, items) | None: the lines of a chunk of Exim log that matter."},
    {"runs", runs, METH_VARARGS,
     "runs(chunk, min_run, each_reply, per_minute, hour_of, domain_of, domains, duration, durations) -> "
     "(lines, items, summaries) | None: scan() with each run of rows counted as batch() counts it."},
    {"set_reasons", set_reasons, METH_VARARGS, "set_reasons(phrases, enhanced, basic): reasons.tables()."},
    {"reason", reason, METH_VARARGS, "reason(code, enhanced, reply) -> str | None: classify() of a row's reply."},
    {"set_simd", set_simd, METH_VARARGS, "set_simd(level) -> the level before: 2 AVX2 (if any), 1 SSE2, 0 none."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "logscan.parsers._exim_scan", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__exim_scan(void)
{
    static const char dirs[2] = {'o', 'i'};
    if (!(EMPTY = PyUnicode_New(0, 0)))
        return NULL;
    for (int d = 0; d < 2; d++)
        for (int c = 0; c < 4; c++) {
            char t[3] = {dirs[d], (char)('2' + c), 0};
            if (!(CLASSES[d][c] = PyUnicode_InternFromString(t)))
                return NULL;
        }
    static const char *const names[2] = {"outbound", "inbound"};
    for (int d = 0; d < 2; d++) {
        if (!(DIRECTIONS[d] = PyUnicode_InternFromString(names[d])))
            return NULL;
        for (int c = 0; c < 4; c++)
            if (!(CLASS_TUPLES[d][c] = Py_BuildValue("(Os)", DIRECTIONS[d], (const char[]){(char)('2' + c), 'x', 'x', 0})))
                return NULL;
    }
    for (const char *k = "SBXD"; *k; k++)
        if (!(KINDS[(Py_UCS1)*k] = PyUnicode_FromStringAndSize(k, 1)))
            return NULL;
    if (!(OTHER = PyUnicode_InternFromString("other")))
        return NULL;
#ifdef HAS_AVX2_PATH
    __builtin_cpu_init();
    AVX2 = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
