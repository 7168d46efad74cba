/*
 * wsgi.file_wrapper (PEP 3333 "Optional Platform-Specific File Handling").
 * Iterating it reads blocks, as the PEP requires; the bridge recognises it
 * and sends a regular file with sendfile instead, without reading it.
 */
#include <Python.h>
#include "bridges/fault.h"

#include <sys/stat.h>
#include <unistd.h>

#include "bridges/wsgi.h"

typedef struct {
    PyObject_HEAD
    PyObject *filelike;
    Py_ssize_t blksize;
} file_wrapper_t;

static PyObject *fw_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"filelike", "blksize", NULL};
    PyObject *filelike;
    Py_ssize_t blksize = 8192;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n:FileWrapper", kwlist, &filelike, &blksize))
        return NULL;
    if (blksize <= 0) {
        PyErr_SetString(PyExc_ValueError, "blksize must be positive");
        return NULL;
    }
    file_wrapper_t *fw = (file_wrapper_t *)GN_FAULT_CALL(type->tp_alloc(type, 0));
    if (fw == NULL)
        return NULL;
    fw->filelike = Py_NewRef(filelike);
    fw->blksize = blksize;
    return (PyObject *)fw;
}

static PyObject *fw_iternext(PyObject *self)
{
    file_wrapper_t *fw = (file_wrapper_t *)self;
    PyObject *data = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
    if (data == NULL)
        return NULL;
    if (PyObject_IsTrue(data) == 1)
        return data;
    Py_DECREF(data);
    return NULL; /* end of file */
}

static PyObject *fw_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    file_wrapper_t *fw = (file_wrapper_t *)self;
    if (!PyObject_HasAttrStringWithError(fw->filelike, "close"))
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return PyObject_CallMethod(fw->filelike, "close", NULL);
}

static int fw_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((file_wrapper_t *)self)->filelike);
    return 0;
}

static int fw_clear(PyObject *self)
{
    Py_CLEAR(((file_wrapper_t *)self)->filelike);
    return 0;
}

static void fw_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fw_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef fw_methods[] = {
    {"close", fw_close, METH_NOARGS, "close the wrapped file"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fw_slots[] = {
    {Py_tp_new, fw_new},
    {Py_tp_dealloc, fw_dealloc},
    {Py_tp_traverse, fw_traverse},
    {Py_tp_clear, fw_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, fw_iternext},
    {Py_tp_methods, fw_methods},
    {Py_tp_doc, "FileWrapper(filelike, blksize=8192): wsgi.file_wrapper"},
    {0, NULL},
};

static PyType_Spec fw_spec = {
    .name = "gorgon._gorgon.FileWrapper",
    .basicsize = sizeof(file_wrapper_t),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = fw_slots,
};

PyTypeObject *gn_wsgi_file_wrapper_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &fw_spec, NULL);
}

/* The file's current position: the file object's own view (a buffered
 * reader has read ahead of the descriptor), else the descriptor's. */
static off_t current_offset(PyObject *filelike, int fd)
{
    PyObject *pos = PyObject_CallMethod(filelike, "tell", NULL);
    if (pos == NULL) {
        PyErr_Clear();
        return lseek(fd, 0, SEEK_CUR);
    }
    long long off = PyLong_AsLongLong(pos);
    Py_DECREF(pos);
    if (off < 0) {
        PyErr_Clear();
        return -1;
    }
    return (off_t)off;
}

int gn_wsgi_file_wrapper_range(PyObject *obj, gn_modstate_t *st, int *fd, off_t *off, size_t *len)
{
    if (Py_TYPE(obj) != st->file_wrapper_type)
        return 0;
    PyObject *filelike = ((file_wrapper_t *)obj)->filelike;
    PyObject *fileno = PyObject_CallMethod(filelike, "fileno", NULL);
    if (fileno == NULL) {
        PyErr_Clear();
        return 0;
    }
    int d = PyLong_AsInt(fileno);
    Py_DECREF(fileno);
    struct stat sb;
    if (d < 0 || fstat(d, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        PyErr_Clear();
        return 0;
    }
    off_t pos = current_offset(filelike, d);
    if (pos < 0 || pos > sb.st_size)
        return 0;
    *fd = d;
    *off = pos;
    *len = (size_t)(sb.st_size - pos);
    return 1;
}
