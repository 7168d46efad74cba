/*
 * Fault injection for the bridges' error paths, in test builds only (make
 * coverage and make test-asan define GN_FAULT; a release build has none of
 * it). _gorgon._fault(n) arms the calling worker thread: in the next request
 * it serves, the n-th of the calls below that can fail (counted from the
 * start of the request, 1-based) fails instead of running: a CPython call
 * with MemoryError, gn_conn_write as when the output queue cannot grow.
 * One fault per arming; a request starting disarms what is left.
 *
 * A worker's start is armed from the environment instead, as no request
 * can reach it: GN_FAULT_START=n makes the n-th such call of the bridge's
 * set-up (gn_wsgi_new, gn_asgi_new and ASGI's lifespan startup) fail, in
 * every worker the process starts; with GN_FAULT_START_AFTER=k, only from
 * the (k+1)-th set-up of the process on (the replacements of the first
 * workers, say).
 */
#ifndef GN_BRIDGES_FAULT_H
#define GN_BRIDGES_FAULT_H

#include <Python.h>

#ifdef GN_FAULT
#include "http/conn.h" /* declared before the gn_conn_write macro below */

/* 1 when this call is the armed one: counts it as fired and writes where it
 * is (file:line) to stderr. */
int gn_fault_hit(const char *file, int line);
/* At the start of each request: the armed countdown (or none) starts. */
void gn_fault_request_start(void);
/* A worker's bridge set-up begins: armed from GN_FAULT_START, if set. */
void gn_fault_setup_begin(void);
/* ... and ends: what is left of the countdown is dropped. */
void gn_fault_setup_end(void);
/* _gorgon._fault(n): arms the next request; returns the faults fired so far
 * on this thread. */
PyObject *gn_fault_arm(PyObject *module, PyObject *n);

#define GN_FAULT_PTR(call) (gn_fault_hit(__FILE__, __LINE__) ? PyErr_NoMemory() : (call))
#define GN_FAULT_INT(call) (gn_fault_hit(__FILE__, __LINE__) ? (PyErr_NoMemory(), -1) : (call))
#define GN_FAULT_UTF8(call) (gn_fault_hit(__FILE__, __LINE__) ? (PyErr_NoMemory(), (const char *)NULL) : (call))

#define PyBytes_FromStringAndSize(...) GN_FAULT_PTR(PyBytes_FromStringAndSize(__VA_ARGS__))
#define Py_BuildValue(...) GN_FAULT_PTR(Py_BuildValue(__VA_ARGS__))
#define PyDict_Copy(...) GN_FAULT_PTR(PyDict_Copy(__VA_ARGS__))
#define PyDict_GetItemWithError(...) GN_FAULT_PTR(PyDict_GetItemWithError(__VA_ARGS__))
#define PyDict_New(...) GN_FAULT_PTR(PyDict_New(__VA_ARGS__))
#define PyImport_ImportModule(...) GN_FAULT_PTR(PyImport_ImportModule(__VA_ARGS__))
#define PyList_New(...) GN_FAULT_PTR(PyList_New(__VA_ARGS__))
#define PyLong_FromUnsignedLong(...) GN_FAULT_PTR(PyLong_FromUnsignedLong(__VA_ARGS__))
#define PyObject_Call(...) GN_FAULT_PTR(PyObject_Call(__VA_ARGS__))
#define PyObject_CallFunction(...) GN_FAULT_PTR(PyObject_CallFunction(__VA_ARGS__))
#define PyObject_CallFunctionObjArgs(...) GN_FAULT_PTR(PyObject_CallFunctionObjArgs(__VA_ARGS__))
#define PyObject_CallMethod(...) GN_FAULT_PTR(PyObject_CallMethod(__VA_ARGS__))
#define PyObject_CallNoArgs(...) GN_FAULT_PTR(PyObject_CallNoArgs(__VA_ARGS__))
#define PyObject_CallOneArg(...) GN_FAULT_PTR(PyObject_CallOneArg(__VA_ARGS__))
#define PyObject_GetAttr(...) GN_FAULT_PTR(PyObject_GetAttr(__VA_ARGS__))
#define PyObject_GetAttrString(...) GN_FAULT_PTR(PyObject_GetAttrString(__VA_ARGS__))
#define PyObject_GetIter(...) GN_FAULT_PTR(PyObject_GetIter(__VA_ARGS__))
#define PyObject_Vectorcall(...) GN_FAULT_PTR(PyObject_Vectorcall(__VA_ARGS__))
#define PySequence_Fast(...) GN_FAULT_PTR(PySequence_Fast(__VA_ARGS__))
#define PySequence_List(...) GN_FAULT_PTR(PySequence_List(__VA_ARGS__))
#define PyTuple_Pack(...) GN_FAULT_PTR(PyTuple_Pack(__VA_ARGS__))
#define PyUnicode_DecodeASCII(...) GN_FAULT_PTR(PyUnicode_DecodeASCII(__VA_ARGS__))
#define PyUnicode_DecodeLatin1(...) GN_FAULT_PTR(PyUnicode_DecodeLatin1(__VA_ARGS__))
#define PyUnicode_DecodeUTF8(...) GN_FAULT_PTR(PyUnicode_DecodeUTF8(__VA_ARGS__))
#define PyUnicode_FromFormat(...) GN_FAULT_PTR(PyUnicode_FromFormat(__VA_ARGS__))
#define PyUnicode_FromString(...) GN_FAULT_PTR(PyUnicode_FromString(__VA_ARGS__))
#define PyUnicode_FromStringAndSize(...) GN_FAULT_PTR(PyUnicode_FromStringAndSize(__VA_ARGS__))
#define PyUnicode_InternFromString(...) GN_FAULT_PTR(PyUnicode_InternFromString(__VA_ARGS__))
#define PyUnicode_Join(...) GN_FAULT_PTR(PyUnicode_Join(__VA_ARGS__))
#define PyDict_SetItem(...) GN_FAULT_INT(PyDict_SetItem(__VA_ARGS__))
#define PyDict_SetItemString(...) GN_FAULT_INT(PyDict_SetItemString(__VA_ARGS__))
#define PyList_Append(...) GN_FAULT_INT(PyList_Append(__VA_ARGS__))
#define PyIter_Next(...) GN_FAULT_PTR(PyIter_Next(__VA_ARGS__))
#define PyObject_CallMethodNoArgs(...) GN_FAULT_PTR(PyObject_CallMethodNoArgs(__VA_ARGS__))
#define PyObject_Str(...) GN_FAULT_PTR(PyObject_Str(__VA_ARGS__))
#define PySequence_GetItem(...) GN_FAULT_PTR(PySequence_GetItem(__VA_ARGS__))
#define PyUnicode_AsUTF8(...) GN_FAULT_UTF8(PyUnicode_AsUTF8(__VA_ARGS__))
#define PyUnicode_AsUTF8AndSize(...) GN_FAULT_UTF8(PyUnicode_AsUTF8AndSize(__VA_ARGS__))
#define PyList_SetSlice(...) GN_FAULT_INT(PyList_SetSlice(__VA_ARGS__))
#define PyLong_AsInt(...) GN_FAULT_INT(PyLong_AsInt(__VA_ARGS__))
#define PyObject_IsTrue(...) GN_FAULT_INT(PyObject_IsTrue(__VA_ARGS__))
#define PySequence_DelItem(...) GN_FAULT_INT(PySequence_DelItem(__VA_ARGS__))
/* Queueing response bytes on the connection fails as a failed allocation
 * there would (http/output.c): -1, no Python exception. */
#define gn_conn_write(...) (gn_fault_hit(__FILE__, __LINE__) ? -1 : gn_conn_write(__VA_ARGS__))
/* A call no name above covers (a type's tp_alloc, PyObject_New). */
#define GN_FAULT_CALL(call) GN_FAULT_PTR(call)

#define GN_FAULT_REQUEST_START() gn_fault_request_start()
#define GN_FAULT_SETUP_BEGIN() gn_fault_setup_begin()
#define GN_FAULT_SETUP_END() gn_fault_setup_end()
#else
#define GN_FAULT_CALL(call) (call)
#define GN_FAULT_REQUEST_START() ((void)0)
#define GN_FAULT_SETUP_BEGIN() ((void)0)
#define GN_FAULT_SETUP_END() ((void)0)
#endif

#endif
