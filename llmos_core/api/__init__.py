"""The OpenAI-compatible HTTP API and the Prometheus endpoint, served from the engine's own process.

API clients, browser visitors and the CLI share one engine: the same loaded models, the same
batches and queue (GenerationService), the same memory manager and monitor.
  schemas.py     request bodies, checked (pydantic), and how they map to SamplingParams
  errors.py      LLMOSError -> OpenAI's error object with the right HTTP status
  streaming.py   a blocking TokenEvent stream run in its own thread, awaited by the event loop
  routes.py      the endpoints (FastAPI app)
  metrics.py     /metrics: Prometheus counters, histograms and gauges, names prefixed llmos_
  server.py      uvicorn in a thread, loopback by default, an API key required beyond it
  snippets.py    the curl / openai snippets the Models page shows
"""
