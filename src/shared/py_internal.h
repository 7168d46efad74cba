/*
 * Shared by pycodec.c, pyapi.c and pychannel.c: the Python <-> bytes
 * conversion and small argument helpers. Not for the rest of the server.
 */
#ifndef GN_SHARED_PY_INTERNAL_H
#define GN_SHARED_PY_INTERNAL_H

#include <Python.h>

#include "module.h"
#include "shared/codec.h"

/* ---- pycodec.c ---- */

/* Appends the encoded value; 0, or -1 with TypeError (naming the type that
 * cannot be shared), ValueError (nesting) or MemoryError (w's limit). */
int gn_py_encode(PyObject *value, gn_wbuf_t *w);
/* Encodes a key, which must be str or bytes (TypeError otherwise). */
int gn_py_encode_key(PyObject *key, gn_wbuf_t *w);
/* A new object from one encoded value; NULL with an exception set. */
PyObject *gn_py_decode(const uint8_t *p, size_t len);
/* Python's name for the type of an encoded value ("int", "str", ...). */
const char *gn_py_type_name(const uint8_t *p, size_t len);

/* ---- pyapi.c ---- */

/* Binds METH_FASTCALL|METH_KEYWORDS arguments to out[0..n_total) by
 * position, then by name; optional ones left out stay NULL. Returns 0, or
 * -1 with TypeError. */
int gn_py_bind(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               const char *const *names, int n_required, int n_total, PyObject **out);
/* Raises gorgon.Unavailable (self: a Shared or Channel object) with the
 * calling thread's last Redis error; returns NULL. */
PyObject *gn_py_unavailable(PyObject *self);
/* None -> -1 (for ever); a number >= 0 -> seconds. -1 with ValueError. */
int gn_py_timeout(PyObject *obj, double *out);

/* ---- pychannel.c ---- */

PyTypeObject *gn_py_channel_type_new(PyObject *module);
/* gorgon.channel(name, capacity=None) */
PyObject *gn_py_channel_open(gn_modstate_t *st, PyObject *name, PyObject *capacity);

#endif
