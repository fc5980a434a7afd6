/* The diagnosis' offender sketches fed a batch of refusals at once (logscan/core/diagnosis.py).
 *
 * feed(rows, at, groups): for each refusal row i, in order, the sketches of groups[at[i]] get
 * its keys exactly as SpaceSaving.add_all() would: an inbound group (two sketches) its sender
 * domain (row[4]) and client IP (row[5]), any other its recipient domain (row[6]); empty keys
 * are skipped. The sketches' own dict (`counts`), candidate list (`_lightest`) and `_floor` are
 * read and written in place, so the Python and C paths leave the same state (held equal by
 * tests/test_diagnosis_batch.py). Optional: without a compiler diagnosis.py does it in Python.
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

static PyMethodDef methods[] = {
    {"feed", feed, METH_VARARGS, "feed(rows, at, groups): each row's keys into the sketches of groups[at[i]], in order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sketch", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sketch(void) { return PyModule_Create(&module); }
