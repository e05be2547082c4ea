"""OpenCode: the server's raw events and stored messages, mapped onto logged sessions.

Everything is read as raw JSON (dicts), never through the SDK's models: the PyPI SDK is older
than current servers, so unknown event types and fields must pass through (they are kept as JSON
in ``metadata``) and nothing here may break on them.

Three ways in share one state per OpenCode session (a process-wide registry keyed by server URL
and OpenCode session id), so whichever sees a message first logs it and the others only update it:

* ``monitor_opencode(client)`` (:mod:`.monitor`) reads ``GET /event`` (SSE) in a thread and
  routes every event by its session id. The stream can drop events, so an idle session, a
  reconnect and the monitor's exit reconcile from ``GET /session/{id}/message``.
* ``instrument()`` patches ``session.chat`` (:mod:`.patches`): the prompt is logged before the
  call, and the whole turn is reconciled from the server when it returns (no monitor needed).
* :class:`~.router.OpencodeRouter` can be fed by hand (``handle(event)``,
  ``reconcile(sid, messages)``), e.g. with recorded streams.

Rows (ids are deterministic per logged session, so every path upserts the same row; :mod:`.rows`):

* a user message: one ``user`` row, content = its text parts;
* an assistant message: one ``assistant`` row with model, tokens, cost and times (the turn's
  usage row); each text/reasoning part is its own ``assistant`` row with the final text; each
  tool part is an ``assistant`` row with ``tool_name``/``tool_input``/``tool_output`` plus a
  ``tool_executions`` row (pending -> running -> completed/error) keyed by the call id;
* other parts and unknown session events: rows with the raw JSON in ``metadata``.

Lifecycle (:mod:`.bindings`, :mod:`.turns`): an OpenCode session joins a ``logged_session`` when a
chat call or ``monitor.attach()`` binds it inside one, or when its first content arrives while a
monitor entered inside one is running (a child session joins its parent's); otherwise it gets its
own logged session. OpenCode sessions are long-lived, so a session of our own shows each turn:
``running`` while busy, ``completed``/``error`` (with ``ended_at``) once idle, ``running`` again
at the next prompt. It is ended when the last monitor watching it exits (as ``error`` if a turn
was still running then) or when the OpenCode session is deleted.
"""
