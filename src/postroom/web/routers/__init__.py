"""One router per area: health, metrics, the tenant API, the operator API and console."""
