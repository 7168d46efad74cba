"""An app importing a PyO3 extension module (watchfiles' _rust_notify, from
requirements-dev.txt), which refuses to load in a sub-interpreter, as
pydantic_core and orjson do."""
import watchfiles._rust_notify  # noqa: F401

from _wsgicheck import checked, text_response

app = checked(lambda environ, start_response: text_response(start_response, "unreachable"))
