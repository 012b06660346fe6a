"""The AlphaVantage client in parts; ``lib.avantage_api`` is the module the rest imports."""
