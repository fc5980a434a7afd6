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
 * Only 1-byte-kind strings (all characters below U+0100) are read; for any other chunk
 * scan() returns None and the caller uses the Python path.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <Python.h>
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

/* The end of the run of characters from p that are none of `stop`. */
static P run_not(P p, P e, const char *stop)
{
    while (p < e && !in(*p, stop))
        p++;
    return p;
}

static P run_digits(P p, P e)
{
    while (p < e && is_digit(*p))
        p++;
    return p;
}

static P find(P p, P e, const char *lit, size_t n)
{
    if (p >= e)
        return NULL;
    return memmem(p, (size_t)(e - p), lit, n);
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

static const char *const TRIGGERS[] = {"rejected ", " authenticator failed for ", " exim", "]exim", " dropped"};
#define NTRIGGERS 5

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

/* The row batch() reads (exim_bulk.py, _row): stamp, key, domain key, class, DT= value,
 * reply text, client IP, line. */
static PyObject *make_row(Row *w, PyObject *line, PyObject **last)
{
    char code[3] = {0, 0, 0};
    int has_code = 0, inbound = w->kind == 'R' || w->kind == 'H' || w->kind == 'A' || w->kind == 'P';
    P enh = NULL, enh_end = NULL;
    if (w->kind == 'R' || w->kind == 'H') {
        /* Exim sends 550 (451 when `temporarily`); an ACL's code of the same class replaces it. */
        memcpy(code, w->tmp ? "451" : "550", 3);
        if (w->code && w->code[0] == code[0]) {
            memcpy(code, w->code, 3);
            enh = w->enh;
            enh_end = w->enh_end;
        }
        has_code = 1;
    } else if (w->code) {
        memcpy(code, w->code, 3);
        enh = w->enh;
        enh_end = w->enh_end;
        has_code = 1;
    }
    Py_UCS1 kbuf[32];
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
    int refusal = has_code && (code[0] == '4' || code[0] == '5');
    PyObject *dom;
    if (w->alt0) {
        Py_ssize_t a = w->dom1 - w->dom0, b = w->alt1 - w->alt0;
        if (b == 0) {
            dom = text(w->dom0, w->dom1);
        } else {
            PyObject *o = PyUnicode_New(a + 1 + b, 255);
            if (o) {
                Py_UCS1 *d = PyUnicode_1BYTE_DATA(o);
                if (a)
                    memcpy(d, w->dom0, (size_t)a);
                d[a] = '\n';
                memcpy(d + a + 1, w->alt0, (size_t)b);
            }
            dom = o;
        }
    } else {
        dom = cached(&last[LAST_DOMAIN], w->dom0, w->dom0 ? w->dom1 - w->dom0 : 0);
    }
    PyObject *v[8] = {
        cached(&last[LAST_STAMP], w->stamp0, w->stamp1 - w->stamp0),
        cached(&last[LAST_KEY], kbuf, kn),
        dom,
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
        int wanted = !boring(s, e);
        for (int k = 0; k < NTRIGGERS && !wanted; k++) {
            if (next[k] < so) {
                P hit = memmem(s, (size_t)(end - s), TRIGGERS[k], strlen(TRIGGERS[k]));
                next[k] = hit ? hit - data : n;
            }
            wanted = next[k] < eo;
        }
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

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, rows) -> (lines, items) | None: the lines of a chunk of Exim log that matter."},
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
    return PyModule_Create(&module);
}
