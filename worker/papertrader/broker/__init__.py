"""The paper broker: turns orders into fills with slippage, fees and exchange precision. See docs/fill-model.md."""
