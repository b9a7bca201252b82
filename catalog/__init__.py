"""catalog: the shop's products, their categories and photos."""
