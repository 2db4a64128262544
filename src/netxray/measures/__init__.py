"""Pure math on arrays: no nn.Module knowledge, statistics in float64."""
