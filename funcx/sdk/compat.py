"""What the funcX documents show that means nothing here: accepted, with one
warning per process (see the README's "Compatibility with the funcX
documentation"), and the documents' constants."""
from __future__ import annotations

import warnings

#: the Globus Auth scope of the funcX web service, as the funcX 1.x and
#: Globus Compute documents name it (``FuncXClient.FUNCX_SCOPE``)
FUNCX_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"

#: constructor arguments of the funcX documents that mean nothing here (no
#: Globus Search, no OpenID Connect): accepted, with one warning
IGNORED_AUTHORIZERS = ("search_authorizer", "openid_authorizer")

_warned: set[str] = set()  # keys of the warnings given

#: the prefix of a Globus Auth identity id written as a URN (search_endpoint's owner_id)
IDENTITY_URN = "urn:globus:auth:identity:"


def warn_once(key: str, message: str, stacklevel: int = 3) -> None:
    """One ``UserWarning`` per process for a documented option that is
    accepted but has no effect here (see the README's compatibility notes)."""
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, UserWarning, stacklevel=stacklevel)


#: other keywords of the public funcX / Globus Compute clients' constructors
#: (their ``**kwargs`` went to globus_sdk's client): accepted, with one warning
INERT_CLIENT_KEYWORDS = ("environment", "app_name", "transport_params", "asynchronous", "loop",
                         "results_ws_uri", "warn_about_url_mismatch")


def warn_ignored_arguments(kwargs: dict) -> None:
    """FuncXClient's constructor: the documents' ``search_authorizer`` and
    ``openid_authorizer``, and the public clients' other keywords
    (:data:`INERT_CLIENT_KEYWORDS`), are accepted and warned about; any other
    keyword (a misspelling) is a ``TypeError``."""
    from funcx.sdk.names import unexpected_keywords

    unknown = set(kwargs) - set(IGNORED_AUTHORIZERS) - set(INERT_CLIENT_KEYWORDS)
    if unknown:
        import inspect

        from funcx.sdk.client import FuncXClient

        known = [*inspect.signature(FuncXClient.__init__).parameters, *IGNORED_AUTHORIZERS,
                 *INERT_CLIENT_KEYWORDS]
        raise unexpected_keywords("FuncXClient()", unknown, known)
    for name in IGNORED_AUTHORIZERS:
        if kwargs.pop(name, None) is not None:
            warn_once(f"client:{name}", f"FuncXClient({name}=...) is accepted and ignored: "
                      "this service has no Globus Search or OpenID Connect; the funcX "
                      "token (fx_authorizer, login_manager or the stored one) is all it "
                      "uses", stacklevel=4)
    if kwargs:
        names = ", ".join(sorted(kwargs))
        warn_once(f"client:{names}", f"FuncXClient: argument(s) {names} accepted and "
                  "ignored: they have no meaning for this service", stacklevel=4)


def warn_asynchronous(method: str) -> None:
    warn_once("asynchronous", f"{method}(asynchronous=...) is accepted and ignored: every "
              "run is asynchronous here (it returns task ids; get_result / get_batch_result "
              "/ wait collect the results)", stacklevel=4)
