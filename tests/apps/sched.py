"""A test app for schedules."""

from squall import App

app = App("sched")


@app.schedule("rate(5 minutes)")
def every_five(event, ctx):
    print("tick", event["time"], event["detail-type"], event["source"])


@app.schedule("cron(0 12 * * ? *)", timezone="Europe/Berlin", missed="catch_up",
              format="aws-scheduled")
def noon_berlin(event, context):
    print("noon", event["time"], event["resources"][0])


@app.schedule("*/10 * * * *", missed="fire_once")
def every_ten(event, ctx):
    print("ten", event["time"])
