"""The token endpoint's grants, one module each; each knows only its own parameters."""

from __future__ import annotations

from app.usecases.grants import authorization_code, refresh_token
from app.usecases.grants.base import Grant

GRANTS: dict[str, Grant] = {
    authorization_code.GRANT_TYPE: authorization_code.grant,
    refresh_token.GRANT_TYPE: refresh_token.grant,
}
