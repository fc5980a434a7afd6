/* The MailEnable scan hot loop in C: the rows of a chunk, and the state walk over them.
 *
 * scan(chunk, rows) does for every line of `chunk` (a str of whole lines, each ending in "\n")
 * what item() in logscan/parsers/mailenable_bulk.py does: a row of a usual line, the line
 * itself for parse(), or nothing for a line parse() reads as NOTHING without changing state.
 * walk(rows, kinds, tx, memo) is that file's walk(): parse()'s transaction steps, on the
 * parser's own state dict. The Python code is the definition: tests/test_mailenable_bulk.py
 * checks this file against it line for line, and under AddressSanitizer.
 *
 * Only 1-byte-kind strings (all characters below U+0100) are read; for any other chunk scan()
 * returns None and the caller uses the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef const Py_UCS1 *P;

#define MAX_LINE 65536
#define MAX_ID 64
#define MAX_IP 45
#define MEMO 16384   /* mailenable_bulk._MEMO */
#define MEMO_LEN 300 /* mailenable_bulk._MEMO_LEN */
enum { SKIP, LINE, ROW };
enum { RCPT = 1, MAIL = 2, CARRY = 3, RESET = 4 };   /* mailenable.py's roles */
enum { OK_2XX = 8, OUTBOUND = 16, REFUSAL = 32 };    /* mailenable_bulk's kind bits */

static int is_digit(Py_UCS1 c) { return c >= '0' && c <= '9'; }

typedef struct {
    P at;
    Py_ssize_t len;
} Span;

/* The verbs STAGES knows, with their role. */
static const struct {
    const char *verb;
    int role;
} VERBS[] = {
    {"", RESET},    {"CONN", RESET}, {"EHLO", 0},     {"HELO", 0},     {"MAIL", MAIL},     {"RCPT", RCPT},
    {"DATA", CARRY}, {"BDAT", CARRY}, {"DATE", CARRY}, {"AUTH", 0},     {"STARTTLS", 0},    {"RSET", RESET},
    {"QUIT", RESET}, {"NOOP", 0},     {"VRFY", 0},     {"EXPN", 0},     {"HELP", 0},        {"ETRN", 0},
    {"TURN", 0},
};

/* The role of a verb STAGES knows; -1 for any other. */
static int role_of(Span v)
{
    for (size_t i = 0; i < sizeof(VERBS) / sizeof(VERBS[0]); i++)
        if ((Py_ssize_t)strlen(VERBS[i].verb) == v.len && memcmp(v.at, VERBS[i].verb, (size_t)v.len) == 0)
            return VERBS[i].role;
    return -1;
}

static int digits(Span s)
{
    if (!s.len)
        return 0;
    for (Py_ssize_t i = 0; i < s.len; i++)
        if (!is_digit(s.at[i]))
            return 0;
    return 1;
}

static int two(P p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

/* `MM/DD/YY hh:mm:ss`, digits only, seconds 00-60 (_STAMP). */
static int stamp(Span t)
{
    static const char shape[] = "00/00/00 00:00:00";
    if (t.len != 17)
        return 0;
    for (int i = 0; i < 17; i++)
        if (shape[i] == '0' ? !is_digit(t.at[i]) : t.at[i] != shape[i])
            return 0;
    return two(t.at + 15) <= 60;
}

/* valid_minute() of a stamp stamp() accepted. */
static int valid_minute(P t)
{
    static const int mdays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int mo = two(t), day = two(t + 3), yy = two(t + 6), hh = two(t + 9), mi = two(t + 12);
    if (!(mo >= 1 && mo <= 12 && day >= 1 && day <= mdays[mo] && hh < 24 && mi < 60))
        return 0;
    return mo != 2 || day < 29 || yy % 4 == 0;
}

/* The enhanced code reply_codes() finds after a reply's code and separator at r[4]. */
static Span enhanced(Span r)
{
    Span none = {r.at, 0};
    Py_ssize_t q = 4, n = r.len;
    if (q < n && r.at[q] == '(')
        q++;
    if (q < n && r.at[q] == '#')
        q++;
    Py_ssize_t start = q;
    if (!(q < n && (r.at[q] == '2' || r.at[q] == '4' || r.at[q] == '5')))
        return none;
    q++;
    if (!(q < n && r.at[q] == '.'))
        return none;
    q++;
    Py_ssize_t d = q;
    while (q < n && is_digit(r.at[q]) && q - d < 4)
        q++;
    if (q - d < 1 || q - d > 3 || !(q < n && r.at[q] == '.'))
        return none;
    q++;
    d = q;
    while (q < n && is_digit(r.at[q]) && q - d < 4)
        q++;
    if (q - d < 1 || q - d > 3 || (q < n && (is_digit(r.at[q]) || r.at[q] == '.')))
        return none;
    Span got = {r.at + start, q - start};
    return got;
}

typedef struct {
    Span minute, secs, qid, addr, ip, reply, verb, code, enh;
    char dir;
} Row;

/* item() of the line [s, e): SKIP, LINE, or ROW with `w` filled. */
static int item(P s, P e, Row *w)
{
    Span col[12];
    if (e - s > MAX_LINE)
        return LINE;
    P p = s;
    for (int i = 0; i < 11; i++) {
        P tab = memchr(p, '\t', (size_t)(e - p));
        if (!tab)
            return LINE;
        col[i].at = p;
        col[i].len = tab - p;
        p = tab + 1;
    }
    col[11].at = p;
    col[11].len = e - p;
    Span agent = col[1];
    if (agent.len == 7 && memcmp(agent.at, "SMTP-IN", 7) == 0) {
        if (!digits(col[8]) || !digits(col[9]) || memchr(col[11].at, '\t', (size_t)col[11].len))
            return LINE;
        w->dir = 'i';
    } else if (agent.len == 7 && memcmp(agent.at, "SMTP-OU", 7) == 0) {
        w->dir = 'o';
    } else if ((agent.len >= 4 && memcmp(agent.at, "IMAP", 4) == 0) ||
               (agent.len >= 3 && memcmp(agent.at, "POP", 3) == 0)) {
        return SKIP;
    } else {
        return LINE;
    }
    if (!stamp(col[0]))
        return LINE;
    int role = role_of(col[5]);
    if (role < 0)
        return LINE;
    Span r = col[7];
    if (!r.len)
        return role != RESET && valid_minute(col[0].at) ? SKIP : LINE;
    if (!(r.len >= 3 && r.at[0] >= '2' && r.at[0] <= '5' && is_digit(r.at[1]) && is_digit(r.at[2]) &&
          (r.len == 3 || r.at[3] == ' ' || r.at[3] == '-')))
        return LINE;
    w->enh.at = r.at;
    w->enh.len = 0;
    if (r.len > 4 && (r.at[4] == '2' || r.at[4] == '4' || r.at[4] == '5' || r.at[4] == '(' || r.at[4] == '#'))
        w->enh = enhanced(r);
    w->addr.at = s;
    w->addr.len = 0;
    if (role == MAIL || role == RCPT) {
        Span c = col[6];
        P lt = memchr(c.at, '<', (size_t)c.len);
        if (!lt)
            return LINE;
        P a = lt + 1, ce = c.at + c.len;
        P gt = memchr(a, '>', (size_t)(ce - a));
        P ae = gt ? gt : ce;
        for (P q = ae; q > a; q--)
            if (q[-1] == '@') {
                w->addr.at = q - 1;
                w->addr.len = ae - (q - 1);
                break;
            }
    }
    w->minute.at = col[0].at;
    w->minute.len = 14;
    w->secs.at = col[0].at + 15;
    w->secs.len = 2;
    w->qid = col[2];
    if (w->qid.len >= 4 && memcmp(w->qid.at + w->qid.len - 4, ".MAI", 4) == 0)
        w->qid.len -= 4;
    if (w->qid.len > MAX_ID)
        w->qid.len = 0;
    w->ip = col[4];
    if (w->ip.len > MAX_IP)
        w->ip.len = 0;
    w->reply = r;
    if (r.at[0] != '4' && r.at[0] != '5')
        w->reply.len = 0;
    w->verb = col[5];
    w->code.at = r.at;
    w->code.len = 3;
    return ROW;
}

static PyObject *EMPTY, *SECS[61], *MANY, *DOMAIN_OF;
static long STATE_CAP;

static PyObject *str(Span s)
{
    return s.len ? PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s.at, s.len) : Py_NewRef(EMPTY);
}

/* A str of these characters, the same object as last time when they are the same: the
 * minute, message file and IP repeat from row to row, which saves allocations here and
 * hashing in the Counter and dicts that read them. */
static PyObject *cached(PyObject **last, Span s)
{
    PyObject *o = *last;
    if (!s.len)
        return Py_NewRef(EMPTY);
    if (o && PyUnicode_GET_LENGTH(o) == s.len && memcmp(PyUnicode_1BYTE_DATA(o), s.at, (size_t)s.len) == 0)
        return Py_NewRef(o);
    if (!(o = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s.at, s.len)))
        return NULL;
    Py_XSETREF(*last, Py_NewRef(o));
    return o;
}

enum { LAST_MINUTE, LAST_QID, LAST_IP, NLAST };

/* The row tuple of mailenable_bulk.item(); steals `line`. Keys are shared through `keys`. */
static PyObject *make_row(const Row *w, PyObject *line, PyObject **last, PyObject *keys)
{
    char buf[64];
    PyObject *row = PyTuple_New(8), *key;
    if (!row) {
        Py_DECREF(line);
        return NULL;
    }
    PyTuple_SET_ITEM(row, 7, line);
    Py_ssize_t n = 1 + w->verb.len + 1 + 3 + 1 + w->enh.len;
    if (n > (Py_ssize_t)sizeof(buf)) /* verbs are at most 8 characters, enhanced codes 9 */
        goto fail;
    char *b = buf;
    *b++ = w->dir;
    memcpy(b, w->verb.at, (size_t)w->verb.len);
    b += w->verb.len;
    *b++ = '\t';
    memcpy(b, w->code.at, 3);
    b += 3;
    *b++ = '\t';
    if (w->enh.len)
        memcpy(b, w->enh.at, (size_t)w->enh.len);
    if (!(key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, buf, n)))
        goto fail;
    PyObject *shared = PyDict_SetDefault(keys, key, key); /* borrowed */
    if (!shared) {
        Py_DECREF(key);
        goto fail;
    }
    Py_INCREF(shared);
    Py_DECREF(key);
    PyTuple_SET_ITEM(row, 2, shared);
    PyObject *fields[7] = {
        cached(&last[LAST_MINUTE], w->minute), Py_NewRef(SECS[two(w->secs.at)]), NULL,
        cached(&last[LAST_QID], w->qid), str(w->addr), cached(&last[LAST_IP], w->ip), str(w->reply),
    };
    for (int i = 0; i < 7; i++) {
        if (i == 2)
            continue;
        if (!fields[i]) {
            for (int j = i + 1; j < 7; j++)
                Py_XDECREF(fields[j]);
            goto fail;
        }
        PyTuple_SET_ITEM(row, i, fields[i]);
    }
    return row;
fail:
    Py_DECREF(row);
    return NULL;
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    PyObject *chunk, *out, *keys;
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
    if (!(keys = PyDict_New())) {
        Py_DECREF(out);
        return NULL;
    }
    Py_ssize_t lines = 0;
    PyObject *last[NLAST] = {NULL};
    Row w;
    for (P s = data; s < end;) {
        P e = memchr(s, '\n', (size_t)(end - s));
        Py_ssize_t so = s - data, eo = e - data;
        lines++;
        int kind = item(s, e, &w);
        s = e + 1;
        if (kind == SKIP)
            continue;
        PyObject *it = PyUnicode_Substring(chunk, so, eo);
        if (it && kind == ROW && want_rows)
            it = make_row(&w, it, last, keys);
        if (!it || PyList_Append(out, it) < 0) {
            Py_XDECREF(it);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(it);
    }
    for (int i = 0; i < NLAST; i++)
        Py_XDECREF(last[i]);
    Py_DECREF(keys);
    return out ? Py_BuildValue("(nN)", lines, out) : NULL;
}

/* mailenable_bulk._domain(): memo[addr], computed by domain_of() when missing. New reference. */
static PyObject *domain(PyObject *memo, PyObject *addr)
{
    PyObject *d = PyDict_GetItemWithError(memo, addr);
    if (d)
        return Py_NewRef(d);
    if (PyErr_Occurred())
        return NULL;
    if (!(d = PyObject_CallOneArg(DOMAIN_OF, addr)))
        return NULL;
    if (PyUnicode_GET_LENGTH(addr) <= MEMO_LEN) {
        if (PyDict_GET_SIZE(memo) >= MEMO)
            PyDict_Clear(memo);
        if (PyDict_SetItem(memo, addr, d) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

/* tx.pop(key, None) */
static int forget(PyObject *tx, PyObject *key)
{
    int has = PyDict_Contains(tx, key);
    return has <= 0 ? has : PyDict_DelItem(tx, key);
}

/* mailenable.remember(): tx[key] = (a, b), dropping the oldest tenth first when full. */
static int remember(PyObject *tx, PyObject *key, PyObject *a, PyObject *b)
{
    int has = PyDict_Contains(tx, key);
    if (has < 0)
        return -1;
    if (!has && PyDict_GET_SIZE(tx) >= STATE_CAP) {
        Py_ssize_t drop = STATE_CAP / 10, pos = 0, i = 0;
        PyObject *old = PyList_New(0), *k, *v;
        if (!old)
            return -1;
        while (i < drop && PyDict_Next(tx, &pos, &k, &v)) {
            if (PyList_Append(old, k) < 0) {
                Py_DECREF(old);
                return -1;
            }
            i++;
        }
        for (i = 0; i < PyList_GET_SIZE(old); i++)
            if (PyDict_DelItem(tx, PyList_GET_ITEM(old, i)) < 0) {
                Py_DECREF(old);
                return -1;
            }
        Py_DECREF(old);
    }
    PyObject *value = PyTuple_Pack(2, a, b);
    if (!value)
        return -1;
    int rc = PyDict_SetItem(tx, key, value);
    Py_DECREF(value);
    return rc;
}

/* tx.get(qid) as a new reference to a pair of str; NULL without an error when missing. */
static PyObject *known_of(PyObject *tx, PyObject *qid)
{
    PyObject *k = PyDict_GetItemWithError(tx, qid);
    if (!k)
        return NULL;
    if (!PyTuple_Check(k) || PyTuple_GET_SIZE(k) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(k, 0)) ||
        !PyUnicode_Check(PyTuple_GET_ITEM(k, 1))) {
        PyErr_SetString(PyExc_TypeError, "walk: a transaction is not a pair of str");
        return NULL;
    }
    return Py_NewRef(k);
}

/* One row's step: sets *sender and *recipient (new references). */
static int step(PyObject *row, long kind, PyObject *tx, PyObject *memo, PyObject **sender, PyObject **recipient)
{
    int role = (int)(kind & 7);
    *sender = Py_NewRef(EMPTY);
    *recipient = Py_NewRef(EMPTY);
    if (!role)
        return 0;
    PyObject *qid = PyTuple_GET_ITEM(row, 3), *known;
    int has_qid = PyUnicode_GET_LENGTH(qid) > 0;
    if (role == RCPT) {
        PyObject *r = domain(memo, PyTuple_GET_ITEM(row, 4));
        if (!r)
            return -1;
        Py_SETREF(*recipient, r);
        known = known_of(tx, qid);
        if (!known && PyErr_Occurred())
            return -1;
        if (known)
            Py_SETREF(*sender, Py_NewRef(PyTuple_GET_ITEM(known, 0)));
        int rc = 0;
        if ((kind & OK_2XX) && has_qid && PyUnicode_GET_LENGTH(r) > 0) {
            if (!known) {
                rc = remember(tx, qid, EMPTY, r);
            } else {
                PyObject *k1 = PyTuple_GET_ITEM(known, 1);
                int ne = PyUnicode_Compare(k1, r);
                if (ne == -1 && PyErr_Occurred())
                    rc = -1;
                else if (ne) {
                    PyObject *v = PyTuple_Pack(2, PyTuple_GET_ITEM(known, 0), PyUnicode_GET_LENGTH(k1) ? MANY : r);
                    rc = v ? PyDict_SetItem(tx, qid, v) : -1;
                    Py_XDECREF(v);
                }
            }
        }
        Py_XDECREF(known);
        return rc;
    }
    if (role == MAIL) {
        PyObject *d = domain(memo, PyTuple_GET_ITEM(row, 4));
        if (!d)
            return -1;
        Py_SETREF(*sender, d);
        return (kind & OK_2XX) && has_qid ? remember(tx, qid, d, EMPTY) : forget(tx, qid);
    }
    if (role == CARRY) {
        known = known_of(tx, qid);
        if (!known)
            return PyErr_Occurred() ? -1 : 0;
        PyObject *k1 = PyTuple_GET_ITEM(known, 1);
        int many = PyUnicode_Compare(k1, MANY);
        if (many == -1 && PyErr_Occurred()) {
            Py_DECREF(known);
            return -1;
        }
        Py_SETREF(*sender, Py_NewRef(PyTuple_GET_ITEM(known, 0)));
        if (many)
            Py_SETREF(*recipient, Py_NewRef(k1));
        Py_DECREF(known);
        return 0;
    }
    return forget(tx, qid);
}

static PyObject *walk(PyObject *self, PyObject *args)
{
    PyObject *rows, *kinds, *tx, *memo;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyList_Type, &rows, &PyDict_Type, &kinds, &PyDict_Type, &tx,
                          &PyDict_Type, &memo))
        return NULL;
    PyObject *labels = PyList_New(0), *pairs = PyList_New(0);
    if (!labels || !pairs)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 8 || !PyUnicode_Check(PyTuple_GET_ITEM(row, 3)) ||
            !PyUnicode_Check(PyTuple_GET_ITEM(row, 4))) {
            PyErr_SetString(PyExc_TypeError, "walk: a row is not mailenable_bulk.item()'s tuple");
            goto fail;
        }
        PyObject *k = PyDict_GetItemWithError(kinds, PyTuple_GET_ITEM(row, 2));
        if (!k) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, PyTuple_GET_ITEM(row, 2));
            goto fail;
        }
        long kind = PyLong_AsLong(k);
        if (kind == -1 && PyErr_Occurred())
            goto fail;
        PyObject *sender, *recipient;
        int rc = step(row, kind, tx, memo, &sender, &recipient);
        if (rc == 0)
            rc = PyList_Append(labels, kind & OUTBOUND ? recipient : sender);
        if (rc == 0 && (kind & REFUSAL)) {
            PyObject *pair = PyTuple_Pack(2, sender, recipient);
            rc = pair ? PyList_Append(pairs, pair) : -1;
            Py_XDECREF(pair);
        }
        Py_DECREF(sender);
        Py_DECREF(recipient);
        if (rc < 0)
            goto fail;
    }
    return Py_BuildValue("(NN)", labels, pairs);
fail:
    Py_XDECREF(labels);
    Py_XDECREF(pairs);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, rows) -> (lines, items) | None: mailenable_bulk.item() of every line of a chunk."},
    {"walk", walk, METH_VARARGS,
     "walk(rows, kinds, tx, memo) -> (labels, pairs): mailenable_bulk.walk(), parse()'s state steps."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "logscan.parsers._mailenable_scan", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__mailenable_scan(void)
{
    if (!(EMPTY = PyUnicode_New(0, 0)))
        return NULL;
    for (int i = 0; i <= 60; i++) {
        char text[3] = {(char)('0' + i / 10), (char)('0' + i % 10), 0};
        if (!(SECS[i] = PyUnicode_InternFromString(text)))
            return NULL;
    }
    /* The constants and domain_of() of the Python definition, so both read the same. */
    PyObject *me = PyImport_ImportModule("logscan.parsers.mailenable");
    if (!me)
        return NULL;
    PyObject *cap = PyObject_GetAttrString(me, "STATE_CAP");
    MANY = PyObject_GetAttrString(me, "MANY");
    Py_DECREF(me);
    if (!cap || !MANY || !PyUnicode_Check(MANY)) {
        Py_XDECREF(cap);
        return NULL;
    }
    STATE_CAP = PyLong_AsLong(cap);
    Py_DECREF(cap);
    if (STATE_CAP <= 0)
        return NULL;
    PyObject *base = PyImport_ImportModule("logscan.parsers.base");
    if (!base)
        return NULL;
    DOMAIN_OF = PyObject_GetAttrString(base, "domain_of");
    Py_DECREF(base);
    if (!DOMAIN_OF)
        return NULL;
    return PyModule_Create(&module);
}
