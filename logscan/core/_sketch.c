/* Two order-bound sketches stepped a batch at a time: the diagnosis' offenders (feed) and the
 * top-domains labels (tally, logscan/core/aggregate.py).
 *
 * feed(rows, at, groups): for each refusal row i, in order, the sketches of groups[at[i]] get
 * its keys exactly as SpaceSaving.add_all() would: an inbound group (two sketches) its sender
 * domain (row[4]) and client IP (row[5]), any other its recipient domain (row[6]); empty keys
 * are skipped. The sketches' own dict (`counts`), candidate list (`_lightest`) and `_floor` are
 * read and written in place, so the Python and C paths leave the same state (held equal by
 * tests/test_diagnosis_batch.py). Optional: without a compiler the Python code does the same.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *obj;      /* the SpaceSaving (borrowed from groups) */
    PyObject *counts;   /* dict str -> int (new reference) */
    PyObject *lightest; /* list of str (new reference) */
    long long floor;
    Py_ssize_t capacity;
} Sketch;

static int load(Sketch *s, PyObject *obj)
{
    PyObject *v;
    s->obj = obj;
    s->counts = PyObject_GetAttrString(obj, "counts");
    s->lightest = PyObject_GetAttrString(obj, "_lightest");
    if (!s->counts || !s->lightest)
        return -1;
    if (!PyDict_CheckExact(s->counts) || !PyList_CheckExact(s->lightest)) {
        PyErr_SetString(PyExc_TypeError, "a sketch's counts must be a dict and _lightest a list");
        return -1;
    }
    if (!(v = PyObject_GetAttrString(obj, "_floor")))
        return -1;
    s->floor = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (!(v = PyObject_GetAttrString(obj, "capacity")))
        return -1;
    s->capacity = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int store(Sketch *s)
{
    PyObject *v = PyLong_FromLongLong(s->floor);
    int rc = v ? PyObject_SetAttrString(s->obj, "_floor", v) : -1;
    Py_XDECREF(v);
    return rc;
}

static int set_count(PyObject *counts, PyObject *key, long long n)
{
    PyObject *v = PyLong_FromLongLong(n);
    int rc = v ? PyDict_SetItem(counts, key, v) : -1;
    Py_XDECREF(v);
    return rc;
}

/* 1 when counts[key] == floor, 0 when not (or absent), -1 on error. */
static int at_floor(PyObject *counts, PyObject *key, long long floor)
{
    PyObject *v = PyDict_GetItemWithError(counts, key);
    if (!v)
        return PyErr_Occurred() ? -1 : 0;
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    return n == floor;
}

/* The lightest entry to evict, as SpaceSaving.add_all: a candidate still at the floor, else the
 * floor looked for again and its keys, first in dict order last. A new reference. */
static PyObject *lightest_key(Sketch *s)
{
    PyObject *lightest = s->lightest;
    Py_ssize_t n;
    while ((n = PyList_GET_SIZE(lightest)) > 0) {
        PyObject *old = PyList_GET_ITEM(lightest, n - 1);
        Py_INCREF(old);
        if (PyList_SetSlice(lightest, n - 1, n, NULL) < 0) {
            Py_DECREF(old);
            return NULL;
        }
        int r = at_floor(s->counts, old, s->floor);
        if (r != 0) {
            if (r < 0) {
                Py_DECREF(old);
                return NULL;
            }
            return old;
        }
        Py_DECREF(old);
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int first = 1;
    long long floor = 0;
    while (PyDict_Next(s->counts, &pos, &key, &value)) {
        long long v = PyLong_AsLongLong(value);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (first || v < floor)
            floor = v;
        first = 0;
    }
    if (first) {
        PyErr_SetString(PyExc_ValueError, "eviction from an empty sketch");
        return NULL;
    }
    s->floor = floor;
    PyObject *found = PyList_New(0);
    if (!found)
        return NULL;
    pos = 0;
    while (PyDict_Next(s->counts, &pos, &key, &value)) {
        if (PyLong_AsLongLong(value) == floor && PyList_Append(found, key) < 0) {
            Py_DECREF(found);
            return NULL;
        }
    }
    if (PyList_Reverse(found) < 0 || PyList_SetSlice(lightest, n, n, found) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    Py_DECREF(found);
    n = PyList_GET_SIZE(lightest);
    PyObject *old = PyList_GET_ITEM(lightest, n - 1);
    Py_INCREF(old);
    if (PyList_SetSlice(lightest, n - 1, n, NULL) < 0) {
        Py_DECREF(old);
        return NULL;
    }
    return old;
}

/* SpaceSaving.add() of one key. */
static int add(Sketch *s, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(s->counts, key);
    if (v) {
        long long n = PyLong_AsLongLong(v);
        if (n == -1 && PyErr_Occurred())
            return -1;
        return set_count(s->counts, key, n + 1);
    }
    if (PyErr_Occurred())
        return -1;
    if (PyDict_GET_SIZE(s->counts) < s->capacity)
        return set_count(s->counts, key, 1);
    PyObject *old = lightest_key(s);
    if (!old)
        return -1;
    int rc = PyDict_DelItem(s->counts, old);
    Py_DECREF(old);
    return rc < 0 ? -1 : set_count(s->counts, key, s->floor + 1);
}

static PyObject *feed(PyObject *self, PyObject *args)
{
    PyObject *rows, *at, *groups;
    if (!PyArg_ParseTuple(args, "O!O!O!:feed", &PyList_Type, &rows, &PyList_Type, &at, &PyList_Type, &groups))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows), ngroups = PyList_GET_SIZE(groups);
    if (PyList_GET_SIZE(at) != n) {
        PyErr_SetString(PyExc_ValueError, "rows and at differ in length");
        return NULL;
    }
    /* Two sketches per group at most (diagnosis.KINDS): group g's are sketches[2g], [2g+1]. */
    Sketch *sketches = PyMem_Calloc((size_t)(2 * ngroups + 1), sizeof(Sketch));
    Py_ssize_t *widths = PyMem_Calloc((size_t)(ngroups + 1), sizeof(Py_ssize_t));
    PyObject *result = NULL;
    if (!sketches || !widths) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        PyObject *group = PyList_GET_ITEM(groups, g);
        if (!PyTuple_Check(group) || PyTuple_GET_SIZE(group) < 1 || PyTuple_GET_SIZE(group) > 2) {
            PyErr_SetString(PyExc_TypeError, "a group is a tuple of one or two sketches");
            goto done;
        }
        widths[g] = PyTuple_GET_SIZE(group);
        for (Py_ssize_t k = 0; k < widths[g]; k++)
            if (load(&sketches[2 * g + k], PyTuple_GET_ITEM(group, k)) < 0)
                goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        Py_ssize_t g = PyLong_AsSsize_t(PyList_GET_ITEM(at, i));
        if (g == -1 && PyErr_Occurred())
            goto done;
        if (g < 0 || g >= ngroups || !PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 7) {
            PyErr_SetString(PyExc_ValueError, "a refusal row of 7 fields and a group index are needed");
            goto done;
        }
        /* Inbound: sender domain then client IP; otherwise the recipient domain. */
        Py_ssize_t first = widths[g] == 2 ? 4 : 6;
        for (Py_ssize_t k = 0; k < widths[g]; k++) {
            PyObject *key = PyTuple_GET_ITEM(row, first + k);
            int truth = PyObject_IsTrue(key);
            if (truth < 0 || (truth && add(&sketches[2 * g + k], key) < 0))
                goto done;
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (sketches) {
        /* The floor is stored even after an error, beside the counts and candidates it goes with. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        for (Py_ssize_t j = 0; j < 2 * ngroups; j++) {
            Sketch *s = &sketches[j];
            if (s->obj && s->counts && s->lightest && store(s) < 0)
                Py_CLEAR(result);
            Py_XDECREF(s->counts);
            Py_XDECREF(s->lightest);
        }
        if (type)
            PyErr_Restore(type, value, tb);
    }
    PyMem_Free(sketches);
    PyMem_Free(widths);
    return result;
}

/* TopDomains.labels (logscan/core/aggregate.py): its two usual cases here, label() called for
 * the rest; after a call the sketch and floor are read again (a halving replaces the sketch). */
typedef struct {
    PyObject *sketch;   /* dict str -> int (new reference) */
    PyObject *labelled; /* set of str (new reference) */
    Py_ssize_t limit;
    long long floor;
} Top;

static int load_top(Top *t, PyObject *top)
{
    PyObject *v;
    Py_CLEAR(t->sketch);
    Py_CLEAR(t->labelled);
    t->sketch = PyObject_GetAttrString(top, "sketch");
    t->labelled = PyObject_GetAttrString(top, "labelled");
    if (!t->sketch || !t->labelled)
        return -1;
    if (!PyDict_CheckExact(t->sketch) || !PyAnySet_CheckExact(t->labelled)) {
        PyErr_SetString(PyExc_TypeError, "sketch must be a dict and labelled a set");
        return -1;
    }
    if (!(v = PyObject_GetAttrString(top, "limit")))
        return -1;
    t->limit = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    if (!(v = PyObject_GetAttrString(top, "_floor")))
        return -1;
    t->floor = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return PyErr_Occurred() ? -1 : 0;
}

/* TopDomains.label(domain) as labels() steps it: a new reference, NULL on error. */
static PyObject *label_of(Top *t, PyObject *top, PyObject *domain, PyObject *other)
{
    if (!PyUnicode_Check(domain)) {
        PyErr_SetString(PyExc_TypeError, "domains must be str");
        return NULL;
    }
    PyObject *v = PyDict_GetItemWithError(t->sketch, domain), *label = NULL;
    if (v) {
        long long est = PyLong_AsLongLong(v);
        int in = PySet_Contains(t->labelled, domain);
        if ((est == -1 && PyErr_Occurred()) || in < 0)
            return NULL;
        if (in)
            label = domain; /* already labelled */
        else if (PySet_GET_SIZE(t->labelled) >= t->limit && est + 1 <= 2 * t->floor + 10)
            label = other; /* too light to displace the weakest labelled domain */
        if (label) {
            if (set_count(t->sketch, domain, est + 1) < 0)
                return NULL;
            Py_INCREF(label);
            return label;
        }
    } else if (PyErr_Occurred()) {
        return NULL;
    } else if (PyUnicode_GET_LENGTH(domain) == 0) {
        Py_INCREF(other); /* no domain is never counted */
        return other;
    }
    label = PyObject_CallMethod(top, "label", "O", domain);
    if (label && load_top(t, top) < 0)
        Py_CLEAR(label);
    return label;
}

/* (label, class) pairs counted in first-appearance order; a class by identity (the readers'
 * classes are a few shared tuples), equal pairs of distinct objects merged at the end. */
typedef struct {
    PyObject *label, *klass; /* strong references */
    Py_hash_t hash;
    Py_ssize_t count;
} Pair;

static PyObject *tally(PyObject *self, PyObject *args)
{
    PyObject *top, *domains, *classes, *other, *out = NULL;
    Top t = {NULL, NULL, 0, 0};
    Pair *pairs = NULL;
    Py_ssize_t *slots = NULL, npairs = 0, cap = 0, mask = 63;
    if (!PyArg_ParseTuple(args, "OO!O!U:tally", &top, &PyList_Type, &domains, &PyList_Type, &classes, &other))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(domains);
    if (PyList_GET_SIZE(classes) != n) {
        PyErr_SetString(PyExc_ValueError, "domains and classes differ in length");
        return NULL;
    }
    if (load_top(&t, top) < 0 || !(slots = PyMem_Calloc((size_t)mask + 1, sizeof(Py_ssize_t))))
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *klass = PyList_GET_ITEM(classes, i);
        PyObject *label = label_of(&t, top, PyList_GET_ITEM(domains, i), other);
        if (!label)
            goto done;
        Py_hash_t h = PyObject_Hash(label);
        if (h == -1) {
            Py_DECREF(label);
            goto done;
        }
        size_t j = ((size_t)h ^ ((size_t)klass >> 4) * 0x9E3779B97F4A7C15u) & (size_t)mask;
        Pair *found = NULL;
        for (; slots[j]; j = (j + 1) & (size_t)mask) {
            Pair *p = &pairs[slots[j] - 1];
            if (p->klass != klass || p->hash != h)
                continue;
            int eq = p->label == label ? 1 : PyUnicode_Compare(p->label, label) == 0;
            if (PyErr_Occurred()) {
                Py_DECREF(label);
                goto done;
            }
            if (eq) {
                found = p;
                break;
            }
        }
        if (found) {
            found->count++;
            Py_DECREF(label);
            continue;
        }
        if (npairs == cap) {
            Pair *grown = PyMem_Realloc(pairs, (size_t)(cap = cap ? 2 * cap : 64) * sizeof(Pair));
            if (!grown) {
                Py_DECREF(label);
                PyErr_NoMemory();
                goto done;
            }
            pairs = grown;
        }
        Py_INCREF(klass);
        pairs[npairs] = (Pair){label, klass, h, 1};
        slots[j] = ++npairs;
        if (2 * npairs > mask) { /* keep the table at most half full: rehash into twice the size */
            PyMem_Free(slots);
            mask = 2 * mask + 1;
            if (!(slots = PyMem_Calloc((size_t)mask + 1, sizeof(Py_ssize_t)))) {
                PyErr_NoMemory();
                goto done;
            }
            for (Py_ssize_t k = 0; k < npairs; k++) {
                size_t m = ((size_t)pairs[k].hash ^ ((size_t)pairs[k].klass >> 4) * 0x9E3779B97F4A7C15u) & (size_t)mask;
                while (slots[m])
                    m = (m + 1) & (size_t)mask;
                slots[m] = k + 1;
            }
        }
    }
    if (!(out = PyDict_New()))
        goto done;
    for (Py_ssize_t k = 0; k < npairs; k++) {
        PyObject *key = PyTuple_Pack(2, pairs[k].label, pairs[k].klass), *had, *sum;
        if (!key)
            goto fail;
        had = PyDict_GetItemWithError(out, key);
        if (!had && PyErr_Occurred()) {
            Py_DECREF(key);
            goto fail;
        }
        sum = PyLong_FromSsize_t(pairs[k].count + (had ? PyLong_AsSsize_t(had) : 0));
        if (!sum || PyDict_SetItem(out, key, sum) < 0) {
            Py_XDECREF(sum);
            Py_DECREF(key);
            goto fail;
        }
        Py_DECREF(sum);
        Py_DECREF(key);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    for (Py_ssize_t k = 0; k < npairs; k++) {
        Py_DECREF(pairs[k].label);
        Py_DECREF(pairs[k].klass);
    }
    PyMem_Free(pairs);
    PyMem_Free(slots);
    Py_XDECREF(t.sketch);
    Py_XDECREF(t.labelled);
    return out;
}

static PyMethodDef methods[] = {
    {"feed", feed, METH_VARARGS, "feed(rows, at, groups): each row's keys into the sketches of groups[at[i]], in order."},
    {"tally", tally, METH_VARARGS, "tally(top, domains, classes, other): Counter(zip(top.labels(domains), classes))."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sketch", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sketch(void) { return PyModule_Create(&module); }
