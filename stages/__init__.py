"""The stage catalogue: one stage per file. Each stage is a plain function or a Ray-callable class
whose docstring states Reads / Writes / Reasons. Stages never import pipeline/."""
