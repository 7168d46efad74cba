"""Free-threading (PEP 703): on a free-threaded build, importing gorgon
leaves the GIL off (the extension declares Py_mod_gil), so --mode threads
runs Python in parallel; on a GIL build, the GIL is on, as it always is.
`make test-ft` runs the suite on a free-threaded CPython; these tests also
run on every other tier, where they check the GIL build's side."""
from conftest import fetch


def test_gil_state_in_threads_mode_matches_the_build(server):
    srv = server("kept:app", "--mode", "threads", workers=2)
    seen = fetch(srv, "/gil").json()
    text = srv.stderr_text()
    if seen["free_threaded_build"]:
        assert seen["gil_enabled"] is False, seen
        assert "free-threaded build, GIL off: the threads run Python in parallel" in text, text
    else:
        assert seen["gil_enabled"] is True, seen
        assert "this Python has a GIL" in text, text
    assert srv.stop() == 0


def test_interpreters_mode_serves_on_this_build(server):
    srv = server("kept:app", "--mode", "interpreters", workers=2)
    seen = fetch(srv, "/gil").json()
    assert seen["gil_enabled"] is not seen["free_threaded_build"], seen
    assert srv.stop() == 0


def test_request_objects_kept_past_their_response_are_detached(server):
    """wsgi.input and start_response kept by the app read nothing and refuse,
    after their request ended (on a free-threaded build, a critical section
    orders that with the worker thread)."""
    srv = server("kept:app", "--mode", "threads", workers=1)
    assert fetch(srv, "/keep", method="POST", body=b"line one\nline two\n").json() == {"kept": True}
    seen = fetch(srv, "/use").json()
    assert seen == {"read": "b''", "readline": "b''",
                    "start_response": "start_response called after the response ended"}, seen
    assert srv.stop() == 0
