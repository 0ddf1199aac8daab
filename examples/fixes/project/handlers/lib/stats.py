"""Summary statistics for the sales report."""


def mean(values):
    if not values:
        return 0.0
    return sum(values) / len(values)


def summarise(label, orders):
    return {
        "label": label,
        "orders": len(orders),
        "revenue": round(sum(orders), 2),
        "average_order": round(mean(orders), 2),
    }
