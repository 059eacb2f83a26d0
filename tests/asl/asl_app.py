"""An app with a state machine over its functions (used in-process, isolated and by the
CLI test)."""

from squall import App

app = App("orders")


@app.function
def price(event, ctx):
    return {"total": sum(i["price"] * i["qty"] for i in event["items"])}


@app.function
def charge(event, ctx):
    if event["total"] > 100:
        raise ValueError(f"card declined for {event['total']}")
    return {"charged": event["total"]}


app.state_machine("checkout", {
    "Comment": "price the order, charge it, or record the refusal",
    "StartAt": "Price",
    "States": {
        "Price": {"Type": "Task", "Resource": "price", "ResultPath": "$.bill", "Next": "Charge"},
        "Charge": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "charge", "Payload.$": "$.bill"},
            "ResultSelector": {"charged.$": "$.Payload.charged"}, "ResultPath": "$.payment",
            "Catch": [{"ErrorEquals": ["ValueError"], "ResultPath": "$.refusal",
                       "Next": "Refused"}],
            "End": True},
        "Refused": {"Type": "Fail", "Error": "PaymentRefused",
                    "CausePath": "$.refusal.Cause"},
    },
})
