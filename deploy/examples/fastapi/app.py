"""Example API served behind authjs-sidecar.

Run (only ever reachable through the sidecar!):
    uvicorn app:app --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI

from authjs_identity import CurrentUser, OptionalUser, User, require_role

app = FastAPI(title="authjs-sidecar example API")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/me", response_model=User)
def me(user: CurrentUser) -> User:
    return user


@app.get("/hello")
def hello(user: OptionalUser) -> dict[str, str]:
    return {"message": f"Hello, {user.name or user.sub}!" if user else "Hello, anonymous!"}


@app.get("/admin")
def admin(user: Annotated[User, Depends(require_role("admin"))]) -> dict[str, object]:
    return {"message": f"Welcome, administrator {user.sub}", "roles": user.roles}
