"""Synthetic handwriting: real handwritten symbols laid out like typeset formulas."""
