"""texlens: read images of mathematical formulas and write LaTeX."""

__version__ = "0.1.0"
