"""Instruction-data loading: source mixtures and the benchmark questions curate checks against."""

from platypus.data.benchmarks import load_benchmark_questions
from platypus.data.sources import load_mixture

__all__ = ["load_benchmark_questions", "load_mixture"]
